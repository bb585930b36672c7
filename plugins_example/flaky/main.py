"""Flaky: a plugin that sometimes fails, so error spans are visible.

* ``/flaky`` fails at random (``flaky_failure_rate``), ``/flaky boom`` always
  raises, ``/flaky hang`` overruns its deadline. The host answers a failed
  command with an error reply, as AstrBot does, and the trace shows the
  ``plugin_call`` span with status ``error`` and the exception.
* The ``roll_dice`` LLM tool raises (``flaky_failure_rate``) or hangs past the
  host's tool timeout (``flaky_timeout_rate``). The agent tells the model,
  which still answers: the reply is sent and the ``tool_call`` span is red.

Randomness comes from ``random.Random(flaky_seed)``, so a run is repeatable.
"""

from __future__ import annotations

import asyncio
import random

from botrace import get_current_span
from botrace_host_adapter.refhost.api import MessageEvent, Star, filter, register


class DiceJammed(RuntimeError):
    """The simulated failure."""


@register("flaky", "botrace", "Fails on purpose, sometimes", "0.1.0", display_name="Flaky")
class FlakyPlugin(Star):
    async def initialize(self) -> None:
        conf = self.context.get_config()
        self.failure_rate = float(conf.get("flaky_failure_rate", 0.3))
        self.timeout_rate = float(conf.get("flaky_timeout_rate", 0.1))
        self.rng = random.Random(conf.get("flaky_seed", 7))
        self.hang_s = float(conf["agent"]["tool_timeout_s"]) * 2 + 0.05

    @filter.command("flaky")
    async def flaky(self, event: MessageEvent):
        """/flaky [boom|hang] — succeeds, or not."""
        mode = event.message_str.partition(" ")[2].strip()
        if mode == "boom" or (not mode and self.rng.random() < self.failure_rate):
            raise DiceJammed("the flaky command failed (on purpose)")
        if mode == "hang":
            await asyncio.wait_for(asyncio.sleep(self.hang_s), timeout=self.hang_s / 4)
        yield event.plain_result("The flaky command worked this time.")

    @filter.llm_tool(name="roll_dice")
    async def roll_dice(self, event: MessageEvent, sides: int = 6) -> str:
        """Roll a die.

        Args:
            sides(integer): number of sides
        """
        draw = self.rng.random()
        span = get_current_span()
        if span is not None:
            span.set_meta(draw=round(draw, 3))
        if draw < self.failure_rate:
            raise DiceJammed("the dice jammed")
        if draw < self.failure_rate + self.timeout_rate:
            await asyncio.sleep(self.hang_s)
        return f"You rolled a {self.rng.randint(1, int(sides))}."
