"""What a plugin can reach of the host: ``self.context`` in a :class:`Star`.

Deliberately small, like AstrBot's ``Context``: the config, the provider in
use, a way to ask the LLM directly, per-session switches, conversation
history and a data directory of the plugin's own.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botrace_host_adapter.refhost.host import RefHost
    from botrace_host_adapter.refhost.providers.base import Provider
    from botrace_host_adapter.refhost.star import StarMetadata

__all__ = ["Context", "ConversationManager", "SessionManager"]


class SessionManager:
    """Per-conversation switches, keyed by ``umo``."""

    def __init__(self, disabled: list[str] | None = None) -> None:
        self._disabled = set(disabled or ())
        self._llm_off: set[str] = set()

    def is_enabled(self, umo: str) -> bool:
        """False: the host ignores the conversation entirely (SessionStatusCheck)."""
        return umo not in self._disabled

    def set_enabled(self, umo: str, enabled: bool) -> None:
        (self._disabled.discard if enabled else self._disabled.add)(umo)

    def llm_enabled(self, umo: str) -> bool:
        """False: commands still work but plain chat gets no LLM reply."""
        return umo not in self._llm_off

    def set_llm_enabled(self, umo: str, enabled: bool) -> None:
        (self._llm_off.discard if enabled else self._llm_off.add)(umo)


class ConversationManager:
    """The last turns of each conversation, as chat-completions messages."""

    def __init__(self, max_messages: int = 12) -> None:
        self.max_messages = max_messages
        self._history: dict[str, deque[dict[str, Any]]] = {}

    def history(self, umo: str) -> list[dict[str, Any]]:
        return list(self._history.get(umo, ()))

    def append(self, umo: str, role: str, content: str) -> None:
        turns = self._history.get(umo)
        if turns is None:
            turns = self._history[umo] = deque(maxlen=self.max_messages)
        turns.append({"role": role, "content": content})

    def reset(self, umo: str) -> int:
        """Forget a conversation; returns how many messages were dropped."""
        return len(self._history.pop(umo, ()))

    def __len__(self) -> int:
        return len(self._history)


class Context:
    """The host as a plugin sees it."""

    def __init__(self, host: RefHost) -> None:
        self._host = host

    def get_config(self) -> dict[str, Any]:
        """A copy of the host's configuration."""
        return self._host.config.snapshot()

    def get_using_provider(self) -> Provider:
        return self._host.provider

    @property
    def sessions(self) -> SessionManager:
        return self._host.sessions

    @property
    def conversations(self) -> ConversationManager:
        return self._host.conversations

    def get_registered_star(self, name: str) -> StarMetadata | None:
        return self._host.stars.get(name)

    def get_all_stars(self) -> list[StarMetadata]:
        return list(self._host.stars.star_map.values())

    def plugin_data_dir(self, plugin_name: str) -> Path:
        """A directory the plugin may write to (created on first use)."""
        path = self._host.data_dir / "plugin_data" / plugin_name
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def llm_generate(self, prompt: str, system_prompt: str = "", purpose: str = "plugin") -> str:
        """Ask the provider once, without tools or history (traced as an ``llm_call``)."""
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": prompt})
        resp = await self._host.call_llm(messages, tools=None, purpose=purpose)
        return resp.completion_text
