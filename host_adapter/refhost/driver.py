"""A synthetic conversation driver: several users and sessions, a realistic mix.

Commands, chats with concurrent tool calls, reminders in SQLite, handoffs to
the search subagent, failures of the flaky plugin, group chatter that does
not wake the bot, and a blocked message — drawn from a seeded RNG so a run
is repeatable.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botrace_host_adapter.refhost.event import MessageEvent, MessageType

if TYPE_CHECKING:
    from botrace_host_adapter.refhost.host import RefHost

__all__ = ["ConversationDriver", "ScriptedMessage"]

log = logging.getLogger("refhost.driver")

USERS = ("alice", "bob", "carol", "dave", "erin", "frank")
GROUPS = ("lounge", "dev-chat")
CITIES = ("Paris", "London", "Tokyo", "Berlin", "Lima", "Oslo", "Cairo", "Austin")
TOPICS = ("botrace tracing", "asyncio context variables", "sqlite wal mode",
          "opentelemetry genai conventions", "astrbot plugins")
TASKS = ("call mom", "water the plants", "stretch", "check the oven", "send the report")

# (weight, template) — {city}, {city2}, {topic}, {task}, {n} are filled in.
MIX: tuple[tuple[int, str], ...] = (
    (10, "/weather {city}"),
    (4, "/w {city}"),
    (14, "what's the weather in {city} and {city2}?"),
    (8, "remind me to {task} in {n} minutes"),
    (4, "list my reminders"),
    (10, "can you search for {topic}?"),
    (6, "roll the dice for me"),
    (5, "/flaky"),
    (4, "/status"),
    (2, "/reset"),
    (10, "hello, how are you today?"),
    (6, "tell me something about {topic}"),
    (1, "this contains a forbidden-word, oops"),
)


@dataclass(frozen=True, slots=True)
class ScriptedMessage:
    text: str
    user_id: str
    session_id: str
    group: bool


class ConversationDriver:
    """Sends ``count`` synthetic messages (or forever with ``count=None``) to a host."""

    def __init__(self, host: RefHost, *, seed: int = 1, concurrency: int = 4,
                 interval_s: float = 0.0, platform: str = "demo",
                 on_reply: Callable[[MessageEvent], None] | None = None) -> None:
        self.host = host
        self.rng = random.Random(seed)
        self.concurrency = max(1, concurrency)
        self.interval_s = interval_s
        self.platform = platform
        self.on_reply = on_reply
        self.sent = 0
        self.failed = 0
        self._weights = [w for w, _ in MIX]
        self._templates = [t for _, t in MIX]

    def next_message(self) -> ScriptedMessage:
        rng = self.rng
        user = rng.choice(USERS)
        group = rng.random() < 0.35
        session = rng.choice(GROUPS) if group else user
        c1, c2 = rng.sample(CITIES, 2)
        text = rng.choices(self._templates, self._weights)[0].format(
            city=c1, city2=c2, topic=rng.choice(TOPICS), task=rng.choice(TASKS),
            n=rng.choice((5, 10, 30, 90)))
        if group:
            roll = rng.random()
            if roll < 0.2:
                text = rng.choice(("lol", "brb", "nice one", "anyone up for lunch?"))  # no wake
            elif not text.startswith("/"):
                text = f"@bot {text}"
        return ScriptedMessage(text, user, session, group)

    async def run(self, count: int | None, stop: asyncio.Event | None = None) -> int:
        """Send messages until ``count`` were sent (None: until ``stop`` is set); returns the count."""
        stop = stop or asyncio.Event()
        gate = asyncio.Semaphore(self.concurrency)
        pending: set[asyncio.Task[None]] = set()
        while (count is None or self.sent < count) and not stop.is_set():
            await gate.acquire()
            if stop.is_set():
                gate.release()
                break
            msg = self.next_message()
            self.sent += 1
            task = asyncio.create_task(self._send(msg, gate))
            pending.add(task)
            task.add_done_callback(pending.discard)
            if self.interval_s:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.interval_s)
                except TimeoutError:
                    pass
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return self.sent

    async def _send(self, msg: ScriptedMessage, gate: asyncio.Semaphore) -> None:
        try:
            event = MessageEvent.create(
                msg.text, user_id=msg.user_id, session_id=msg.session_id, platform=self.platform,
                message_type=MessageType.GROUP if msg.group else MessageType.PRIVATE)
            await self.host.handle_event(event)
            if self.on_reply is not None:
                self.on_reply(event)
        except Exception:
            self.failed += 1
            log.exception("message %r failed", msg.text)
        finally:
            gate.release()
