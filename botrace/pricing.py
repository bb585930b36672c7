"""Model price table: what an LLM call cost, from its token counts.

The table comes from ``Settings.trace_prices``::

    {"gpt-4o": {"input": 2.5, "cached_input": 1.25, "output": 10.0}}

Prices are US dollars per million tokens. ``input_tokens`` is taken to include
the cached ones (as OpenAI and Anthropic report them), so cached tokens are
billed at ``cached_input`` and the rest of the input at ``input``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ModelPrice", "PriceTable"]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    input: float = 0.0
    cached_input: float | None = None  # None: same as input
    output: float = 0.0


class PriceTable:
    """Cost lookups by model name (exact match, then longest prefix match).

    >>> PriceTable({"gpt-4o": {"input": 2.5, "output": 10}}).cost("gpt-4o", 1000, 100)
    0.0035
    """

    def __init__(self, table: Mapping[str, object] | None = None) -> None:
        self._prices: dict[str, ModelPrice] = {}
        for model, entry in (table or {}).items():
            self._prices[str(model)] = _parse_price(model, entry)
        self._cache: dict[str, ModelPrice | None] = {}

    def __bool__(self) -> bool:
        return bool(self._prices)

    def price(self, model: str | None) -> ModelPrice | None:
        if not model or not self._prices:
            return None
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = self._prices.get(model)
        if found is None:
            # "gpt-4o-2024-08-06" priced as "gpt-4o": the longest configured prefix wins
            best = ""
            for name in self._prices:
                if model.startswith(name) and len(name) > len(best):
                    best = name
            found = self._prices.get(best) if best else None
        if len(self._cache) < 4096:
            self._cache[model] = found
        return found

    def cost(
        self,
        model: str | None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
    ) -> float:
        """US dollars for one call; 0.0 for an unknown model."""
        p = self.price(model)
        if p is None:
            return 0.0
        cached = max(0, min(int(cached_tokens or 0), int(input_tokens or 0)))
        fresh = max(0, int(input_tokens or 0) - cached)
        cached_price = p.input if p.cached_input is None else p.cached_input
        usd = (fresh * p.input + cached * cached_price + int(output_tokens or 0) * p.output) / 1e6
        return round(usd, 10)


def _parse_price(model: object, entry: object) -> ModelPrice:
    if not isinstance(entry, Mapping):
        raise ValueError(f"trace_prices[{model!r}] must be a mapping of input/cached_input/output")
    unknown = set(entry) - {"input", "cached_input", "output"}
    if unknown:
        raise ValueError(f"trace_prices[{model!r}]: unknown keys {sorted(unknown)}")
    try:
        cached = entry.get("cached_input")
        return ModelPrice(
            input=float(entry.get("input", 0.0)),
            cached_input=None if cached is None else float(cached),
            output=float(entry.get("output", 0.0)),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"trace_prices[{model!r}]: prices must be numbers ({exc})") from None
