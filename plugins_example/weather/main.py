"""Weather: a ``/weather <city>`` command and a ``get_weather`` LLM tool.

What it shows a plugin author:

* ``@span_record(..., span_type="io_call")`` on the function that does IO:
  every call becomes a span with the city as input and the forecast as output.
* ``span_context`` around one step inside it (the HTTP request), with
  ``set_input`` / ``set_output``.
* ``get_current_span()`` to annotate the current span (a cache hit) without
  passing spans around. None of it needs a check whether tracing is on.

The "weather service" is a deterministic table so the example runs offline;
``example_io_latency_ms`` in the host config makes each request take that long.
"""

from __future__ import annotations

import asyncio
import zlib

from botrace import get_current_span, span_context, span_record
from botrace_host_adapter.refhost.api import MessageEvent, Star, filter, register

_SKIES = ("sunny", "cloudy", "light rain", "thunderstorms", "snow", "fog", "windy")


@span_record("plugin.weather.fetch", span_type="io_call")
async def fetch_forecast(city: str, latency_s: float = 0.0) -> dict:
    """Ask the (simulated) weather service about ``city``."""
    async with span_context("GET weather-api", span_type="io_call") as http:
        url = f"https://weather.example/v1/current?city={city}"
        http.set_input(method="GET", url=url)
        if latency_s:
            await asyncio.sleep(latency_s)
        seed = zlib.crc32(city.strip().lower().encode())
        forecast = {"city": city.strip().title(), "sky": _SKIES[seed % len(_SKIES)],
                    "temp_c": seed % 35 - 5, "humidity": 30 + seed % 60}
        http.set_output(status=200)
    return forecast


def describe(f: dict) -> str:
    return f"{f['city']}: {f['sky']}, {f['temp_c']}°C, humidity {f['humidity']}%"


@register("weather", "botrace", "Current weather for a city", "1.2.0", display_name="Weather")
class WeatherPlugin(Star):
    async def initialize(self) -> None:
        self.latency_s = float(self.context.get_config().get("example_io_latency_ms", 0)) / 1000
        self.cache: dict[str, dict] = {}

    async def _forecast(self, city: str) -> dict:
        key = city.strip().lower()
        cached = self.cache.get(key)
        span = get_current_span()
        if span is not None:
            span.set_meta(cache_hit=cached is not None)
        if cached is None:
            cached = self.cache[key] = await fetch_forecast(city, self.latency_s)
        return cached

    @filter.command("weather", alias={"w"})
    async def weather(self, event: MessageEvent):
        """/weather <city> — the current weather."""
        city = event.message_str.partition(" ")[2].strip()
        if not city:
            yield event.plain_result("Usage: /weather <city>")
            return
        yield event.plain_result(describe(await fetch_forecast(city, self.latency_s)))

    @filter.llm_tool(name="get_weather")
    async def get_weather(self, event: MessageEvent, city: str) -> str:
        """Get the current weather for a city.

        Args:
            city(string): the city name, e.g. Paris
        """
        return describe(await self._forecast(city))
