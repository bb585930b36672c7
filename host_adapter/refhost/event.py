"""Message events and results, shaped like AstrBot's ``AstrMessageEvent``.

An event is one incoming chat message. Its *unified message origin*
(``umo``) names the conversation it came from as
``platform:message_type:session`` — the key every per-conversation thing in
the host (history, rate limit, session switches) is stored under::

    >>> ev = MessageEvent.create("/weather Paris", user_id="u1", session_id="g42",
    ...                          message_type="group")
    >>> ev.umo
    'demo:group:g42'
"""

from __future__ import annotations

import enum
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EventResultType", "MessageEvent", "MessageEventResult", "MessageType"]

_ids = itertools.count(1)


class MessageType(enum.StrEnum):
    PRIVATE = "private"
    GROUP = "group"


class EventResultType(enum.Enum):
    CONTINUE = "continue"
    STOP = "stop"


@dataclass(slots=True)
class MessageEventResult:
    """What a handler or the agent wants sent back.

    ``chain`` is the list of text segments the reply is made of. A streaming
    result has ``stream`` set instead: an async iterator of text chunks that
    the Respond stage consumes (so, as in AstrBot, the agent runs there).
    """

    chain: list[str] = field(default_factory=list)
    result_type: EventResultType = EventResultType.CONTINUE
    is_llm_result: bool = False
    stream: AsyncIterator[str] | None = None

    def message(self, text: str) -> MessageEventResult:
        self.chain.append(text)
        return self

    def stop_event(self) -> MessageEventResult:
        self.result_type = EventResultType.STOP
        return self

    @property
    def text(self) -> str:
        return "".join(self.chain)


@dataclass(slots=True, eq=False)
class MessageEvent:
    """One incoming message and what the pipeline learns about it on the way."""

    platform: str
    message_type: MessageType
    session_id: str
    sender_id: str
    sender_name: str
    message_str: str
    message_id: str = ""
    #: The text as received (``message_str`` loses the wake prefix on the way).
    raw_message: str = ""
    created_at: float = field(default_factory=time.time)
    #: Set by WakingCheck: the bot was addressed (private chat, wake prefix, @bot).
    is_wake: bool = False
    #: Set by WakingCheck: the message text began with the wake prefix.
    is_command: bool = False
    #: Free-form per-message scratch space for stages and plugins.
    extras: dict[str, Any] = field(default_factory=dict)
    #: Every reply sent for this message, in order (the reference platform's "outbox").
    replies: list[str] = field(default_factory=list)
    _result: MessageEventResult | None = None
    _stopped: bool = False

    @classmethod
    def create(
        cls,
        text: str,
        *,
        user_id: str = "user",
        session_id: str | None = None,
        message_type: MessageType | str = MessageType.PRIVATE,
        platform: str = "demo",
        sender_name: str | None = None,
    ) -> MessageEvent:
        """Build an event the way a platform adapter would from a raw message."""
        mtype = MessageType(message_type)
        return cls(
            platform=platform,
            message_type=mtype,
            session_id=session_id or user_id,
            sender_id=user_id,
            sender_name=sender_name or user_id,
            message_str=text,
            message_id=f"m{next(_ids)}",
            raw_message=text,
        )

    # -- identity (AstrBot spells these get_*) --
    @property
    def umo(self) -> str:
        return f"{self.platform}:{self.message_type.value}:{self.session_id}"

    unified_msg_origin = umo

    def get_sender_id(self) -> str:
        return self.sender_id

    def get_sender_name(self) -> str:
        return self.sender_name

    def get_message_str(self) -> str:
        return self.message_str

    def is_private_chat(self) -> bool:
        return self.message_type is MessageType.PRIVATE

    # -- propagation --
    def stop_event(self) -> None:
        """No later stage or handler sees this message."""
        self._stopped = True

    def continue_event(self) -> None:
        self._stopped = False

    def is_stopped(self) -> bool:
        return self._stopped

    # -- results --
    def set_result(self, result: MessageEventResult | str) -> None:
        if isinstance(result, str):
            result = MessageEventResult().message(result)
        self._result = result

    def get_result(self) -> MessageEventResult | None:
        return self._result

    def clear_result(self) -> None:
        self._result = None

    def plain_result(self, text: str) -> MessageEventResult:
        """A reply made of one text segment; ``yield`` it from a handler."""
        return MessageEventResult().message(text)

    async def send(self, text: str) -> None:
        """Deliver a reply to the chat (the reference platform keeps it in ``replies``)."""
        self.replies.append(text)
