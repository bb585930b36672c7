"""Plugin attribution: precedence, inheritance, unload and reload."""

from __future__ import annotations

from botrace import PluginRef, PluginRegistry, hookimpl, span_context, span_record
from botrace.testing import capture_spans

WEATHER = PluginRef("weather", "Weather", "third_party", "1.0")
SESSION = PluginRef("session_controller", "Session controller", "builtin", "4.0")


def test_longest_dotted_prefix_wins_by_whole_segments():
    reg = PluginRegistry()
    reg.register("data.plugins", PluginRef("all_plugins"))
    reg.register("data.plugins.weather", WEATHER)
    assert reg.resolve("data.plugins.weather.main") is WEATHER
    assert reg.resolve("data.plugins.weather") is WEATHER
    assert reg.resolve("data.plugins.weatherman.main").name == "all_plugins"
    assert reg.resolve("astrbot.core") is None
    assert reg.resolve("") is None


def test_unregister_and_reregister_are_never_served_stale():
    reg = PluginRegistry()
    reg.register("data.plugins.weather", WEATHER)
    assert reg.resolve("data.plugins.weather.main") is WEATHER  # now cached
    assert reg.unregister("weather") == 1
    assert reg.resolve("data.plugins.weather.main") is None
    v2 = PluginRef("weather", version="2.0")
    reg.register("data.plugins.weather", v2)
    assert reg.resolve("data.plugins.weather.main") is v2


def test_fallback_is_asked_for_unknown_modules_and_cached_until_invalidated():
    asked = []

    def fallback(module):
        asked.append(module)
        return SESSION if module.startswith("astrbot.builtin_stars") else None

    reg = PluginRegistry(fallback=fallback)
    assert reg.resolve("astrbot.builtin_stars.session.main") is SESSION
    assert reg.resolve("astrbot.builtin_stars.session.main") is SESSION
    assert asked == ["astrbot.builtin_stars.session.main"]
    reg.invalidate()
    reg.resolve("astrbot.builtin_stars.session.main")
    assert len(asked) == 2


def test_plugin_ref_validates_type_and_defaults_display_name():
    assert PluginRef("x").display_name == "x"
    try:
        PluginRef("x", plugin_type="core")
    except ValueError as exc:
        assert "plugin_type" in str(exc)
    else:
        raise AssertionError("bad plugin_type accepted")


@span_record("weather.fetch", span_type="io_call")
def fetch_weather():
    with span_context("http_get", "io_call"):
        pass


def test_precedence_explicit_then_module_then_inherited():
    plugins = {__name__: WEATHER}
    with capture_spans(plugins=plugins) as cap:
        # host adapter passes the handler's plugin explicitly
        with cap.tracer.span("handler", "plugin_call", plugin=SESSION):
            fetch_weather()  # module of the decorated function -> weather
            with span_context("inherits"):  # no plugin, no module -> parent's (session)
                pass
            with span_context("by module", module=__name__):
                pass
    assert cap.find("handler").plugin is SESSION
    assert cap.find("weather.fetch").plugin is WEATHER
    assert cap.find("http_get").plugin is WEATHER  # inherited from nearest attributed ancestor
    assert cap.find("inherits").plugin is SESSION
    assert cap.find("by module").plugin is WEATHER


def test_unattributed_spans_stay_unattributed():
    with capture_spans() as cap:
        fetch_weather()
    assert cap.find("weather.fetch").plugin is None


def test_unload_and_reload_change_attribution_of_new_spans():
    with capture_spans() as cap:
        cap.tracer.plugins.register(__name__, WEATHER)
        fetch_weather()
        cap.tracer.plugins.unregister("weather")
        fetch_weather()
        v2 = PluginRef("weather", version="2.0")
        cap.tracer.plugins.register(__name__, v2)
        fetch_weather()
    first, second, third = cap.find_all("weather.fetch")
    assert first.plugin is WEATHER
    assert second.plugin is None
    assert third.plugin is v2


def test_resolve_plugin_hook_is_the_fallback_of_the_tracer_registry():
    class Adapter:
        @hookimpl
        def botrace_resolve_plugin(self, module_path):
            return SESSION if module_path == __name__ else None

    with capture_spans() as cap:
        cap.tracer.register(Adapter())
        fetch_weather()
    assert cap.find("weather.fetch").plugin is SESSION
