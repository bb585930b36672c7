"""botrace for a real AstrBot: the adapter that wraps AstrBot's pipeline, and the AstrBot
plugin an operator installs (``botrace astrbot-plugin`` writes it).

* :mod:`.adapter` — :class:`AstrBotAdapter`: host hooks for AstrBot and the wrappers that
  turn a message's trip through AstrBot into spans (install / uninstall).
* :mod:`.recording` — what goes on those spans, read defensively from AstrBot's objects.

Importing this package does not import AstrBot.
"""

from botrace_host_adapter.astrbot.adapter import TARGETS, AstrBotAdapter, describe_astrbot_event

__all__ = ["TARGETS", "AstrBotAdapter", "describe_astrbot_event"]
