"""Example plugins for the reference host, written the way plugin authors write them.

Each plugin is a package with a ``main`` module holding one ``@register``-ed
``Star`` class, as AstrBot's plugins are. They import only botrace's public
names (``span_record``, ``span_context``, ``get_current_span``) and the
reference host's plugin API (:mod:`botrace_host_adapter.refhost.api`).

* ``weather`` — a command and an LLM tool; ``@span_record`` on an IO call and
  ``span_context`` around the "HTTP request" inside it.
* ``reminder`` — LLM tools backed by real SQLite IO in a worker thread.
* ``search_agent`` — a subagent with its own tools (search, then open a page).
* ``session_controller`` — builtin-style: session commands, a hook on every
  LLM request, a handler on every message.
* ``flaky`` — sometimes raises, sometimes hangs, so error spans are visible.
"""
