"""The reference host: a small but real chatbot host shaped like AstrBot 4.14.

* :mod:`~botrace_host_adapter.refhost.event` — message events (``umo``) and results
* :mod:`~botrace_host_adapter.refhost.pipeline` — the nine stages and the onion scheduler
* :mod:`~botrace_host_adapter.refhost.star` — plugins ("stars"): load, unload, reload
* :mod:`~botrace_host_adapter.refhost.api` — what plugin authors import
* :mod:`~botrace_host_adapter.refhost.agent` — the tool loop and subagent handoffs
* :mod:`~botrace_host_adapter.refhost.providers` — scripted offline and OpenAI-compatible LLMs
* :mod:`~botrace_host_adapter.refhost.host` — :class:`RefHost`, all of it wired together
* :mod:`~botrace_host_adapter.refhost.tracing` — its host adapter for botrace
"""

from botrace_host_adapter.refhost.event import MessageEvent, MessageEventResult
from botrace_host_adapter.refhost.host import DEFAULT_CONFIG, EXAMPLE_PLUGINS, RefHost

__all__ = ["DEFAULT_CONFIG", "EXAMPLE_PLUGINS", "MessageEvent", "MessageEventResult", "RefHost"]
