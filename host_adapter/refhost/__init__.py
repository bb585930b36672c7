"""The reference host: a small but real chatbot host shaped like AstrBot 4.14.

* :mod:`~host_adapter.refhost.event` — message events (``umo``) and results
* :mod:`~host_adapter.refhost.pipeline` — the nine stages and the onion scheduler
* :mod:`~host_adapter.refhost.star` — plugins ("stars"): load, unload, reload
* :mod:`~host_adapter.refhost.api` — what plugin authors import
* :mod:`~host_adapter.refhost.agent` — the tool loop and subagent handoffs
* :mod:`~host_adapter.refhost.providers` — scripted offline and OpenAI-compatible LLMs
* :mod:`~host_adapter.refhost.host` — :class:`RefHost`, all of it wired together
* :mod:`~host_adapter.refhost.tracing` — its host adapter for botrace
"""

from host_adapter.refhost.event import MessageEvent, MessageEventResult
from host_adapter.refhost.host import DEFAULT_CONFIG, EXAMPLE_PLUGINS, RefHost

__all__ = ["DEFAULT_CONFIG", "EXAMPLE_PLUGINS", "MessageEvent", "MessageEventResult", "RefHost"]
