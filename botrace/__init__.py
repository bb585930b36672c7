"""botrace: hierarchical, plugin-aware tracing for chatbot hosts.

Plugin authors need three names and never a check whether tracing is on::

    from botrace import span_record, span_context, get_current_span

Host developers build a :class:`Tracer`, register sinks and their adapter, and
open spans through the hooks in :mod:`botrace.hookspecs`.
"""

from botrace.attribution import BUILTIN, THIRD_PARTY, PluginRef, PluginRegistry
from botrace.config import Settings, SettingsError
from botrace.context import get_current_span, run_in_executor, wrap_context
from botrace.hookspecs import hookimpl
from botrace.limits import Limits, make_safe
from botrace.record import span_context, span_record
from botrace.span import NULL_SPAN, NullSpan, Span, SpanType, Status, Trace
from botrace.tracer import Tracer, get_tracer, install, uninstall

__version__ = "0.1.0"

__all__ = [
    "BUILTIN",
    "NULL_SPAN",
    "THIRD_PARTY",
    "Limits",
    "NullSpan",
    "PluginRef",
    "PluginRegistry",
    "Settings",
    "SettingsError",
    "Span",
    "SpanType",
    "Status",
    "Trace",
    "Tracer",
    "__version__",
    "get_current_span",
    "get_tracer",
    "hookimpl",
    "install",
    "make_safe",
    "run_in_executor",
    "span_context",
    "span_record",
    "uninstall",
    "wrap_context",
]
