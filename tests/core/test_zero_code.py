"""Zero-code: ``opentelemetry-instrument uvicorn app:app`` runs on otel-trader's configuration.

The served app (``apps/zero_code_app.py``) never imports otel_trader. Real processes, real
uvicorn, 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))
from procs import Launcher, clean_env  # noqa: E402

SERVICE = "zero-code-svc"


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    """Starts app processes; kills whatever is still running at teardown."""
    launch = Launcher(tmp_path)
    yield launch
    launch.stop_all()


def samples(text: str, name: str) -> list[Any]:
    """Every sample of the metric family ``name`` (Prometheus name without ``_total``)."""
    return [s for f in text_string_to_metric_families(text) if f.name == name for s in f.samples]


def json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON documents the console exporters printed (one per span / log / metrics batch),
    skipping the uvicorn access-log lines between them."""
    decoder = json.JSONDecoder()
    found: list[dict[str, Any]] = []
    position = 0
    while (start := text.find("{", position)) != -1:
        if start and text[start - 1] != "\n":
            position = start + 1
            continue
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            position = start + 1
            continue
        if isinstance(obj, dict):
            found.append(obj)
        position = end
    return found


@pytest.mark.timeout(90)
def test_metrics_and_resource_come_from_otel_trader(launcher: Launcher) -> None:
    """RED metrics per route template, target_info from OTEL_SERVICE_NAME, nothing double-counted."""
    app = launcher.uvicorn(
        "zero_code_app",
        # Contrib names in the standard variable are normal under opentelemetry-instrument.
        clean_env(
            TELEMETRY_EXPORTER="none",
            OTEL_SERVICE_NAME=SERVICE,
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="requests,urllib3",
        ),
        instrument=True,
    )
    n = 7
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for i in range(n):
            assert client.get(f"/orders/SYM{i}").status_code == 200
        for _ in range(2):
            assert client.get("/sub/ping").status_code == 200
        metrics = client.get("/metrics")
    assert metrics.status_code == 200, app.stderr()
    text = metrics.text

    counts = {
        (s.labels["method"], s.labels["path"], s.labels["status"]): s.value
        for s in samples(text, "http_requests")
        if s.name == "http_requests_total"
    }
    # The mounted sub-app is counted once, by the served app's middleware, under its full template.
    assert counts == {("GET", "/orders/{symbol}", "200"): n, ("GET", "/sub/ping", "200"): 2}
    durations = {
        s.labels["path"]: s.value for s in samples(text, "http_request_duration_seconds") if s.name.endswith("_count")
    }
    assert durations == {"/orders/{symbol}": n, "/sub/ping": 2}

    (target,) = samples(text, "target_info")
    assert target.labels["service_name"] == SERVICE
    assert target.labels["telemetry_distro_name"] == "otel-trader"
    # Neither the contrib ASGI/FastAPI instrumentation nor FastAPI's native telemetry ran.
    names = {f.name for f in text_string_to_metric_families(text)}
    assert not [name for name in names if name.startswith("http_server")], names


@pytest.mark.timeout(90)
def test_exactly_one_server_span_per_request(launcher: Launcher) -> None:
    """Console exporter: one SERVER span per request, one CLIENT span per httpx call, flushed on SIGTERM."""
    app = launcher.uvicorn(
        "zero_code_app",
        clean_env(TELEMETRY_EXPORTER="console", OTEL_SERVICE_NAME=SERVICE),
        instrument=True,
    )
    n = 5
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for i in range(n):
            assert client.get(f"/orders/SYM{i}").status_code == 200
        assert client.get("/fanout").json() == {"status": 200}  # + the /orders/ETH it calls
        assert client.get("/sub/ping").status_code == 200
    # SIGTERM as docker/Kubernetes send it: uvicorn re-raises it after shutdown, so only the
    # flush at lifespan end gets the spans out (atexit never runs).
    exit_seconds = app.stop()
    assert exit_seconds < 10, f"exit took {exit_seconds:.1f}s"

    spans = [o for o in json_objects(app.stdout()) if "kind" in o and "context" in o]
    server = [s for s in spans if s["kind"] == "SpanKind.SERVER"]
    client_spans = [s for s in spans if s["kind"] == "SpanKind.CLIENT"]
    routes = sorted(s["attributes"].get("http.route") for s in server)
    assert routes == sorted(["/orders/{symbol}"] * (n + 1) + ["/fanout", "/sub/ping"]), app.stderr()[-3000:]
    assert len(server) == n + 3
    assert len(client_spans) == 1, client_spans
    assert {s["resource"]["attributes"]["service.name"] for s in spans} == {SERVICE}
    # W3C propagation through our httpx integration: the called request continues the trace.
    inner = [s for s in server if s["parent_id"] == client_spans[0]["context"]["span_id"]]
    assert len(inner) == 1 and inner[0]["context"]["trace_id"] == client_spans[0]["context"]["trace_id"]


@pytest.mark.timeout(60)
def test_otel_sdk_disabled_instruments_nothing(launcher: Launcher) -> None:
    """OTEL_SDK_DISABLED=true wins over the distro's TELEMETRY_ENABLED default."""
    app = launcher.uvicorn("zero_code_app", clean_env(OTEL_SDK_DISABLED="true"), instrument=True)
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert client.get("/orders/BTC").status_code == 200
        assert client.get("/metrics").status_code == 404


@pytest.mark.timeout(60)
def test_bad_configuration_warns_and_the_app_still_serves(launcher: Launcher) -> None:
    app = launcher.uvicorn("zero_code_app", clean_env(TELEMETRY_EXPORTER="kafka"), instrument=True)
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert client.get("/orders/BTC").status_code == 200
        assert client.get("/metrics").status_code == 404
    app.stop()
    stderr = app.stderr()
    assert "otel-trader: telemetry is off, configuration failed" in stderr
    assert "TELEMETRY_EXPORTER='kafka'" in stderr
    assert "Traceback" not in stderr


# -- the distro's decisions, in process ------------------------------------------------------


class FakeEntryPoint:
    """Stands in for an ``opentelemetry_instrumentor`` entry point."""

    def __init__(self, name: str, error: Exception | None = None) -> None:
        self.name = name
        self.error = error
        self.instrumented = False

    def load(self) -> Any:
        entry = self

        class Instrumentor:
            def instrument(self, **kwargs: Any) -> None:
                if entry.error is not None:
                    raise entry.error
                entry.instrumented = True

        return Instrumentor


def test_distro_skips_what_otel_trader_instruments(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_trader.integrations import distro

    monkeypatch.setattr(distro, "_configured_active", True)
    owned = [
        FakeEntryPoint(name)
        for name in ("fastapi", "asgi", "starlette", "httpx", "sqlalchemy", "redis", "aiohttp-client", "requests", "logging")
    ]
    others = [FakeEntryPoint("urllib3"), FakeEntryPoint("httpx2"), FakeEntryPoint("grpc_client")]
    for entry_point in owned + others:
        distro.OtelTraderDistro().load_instrumentor(entry_point, skip_dep_check=True)
    assert [e.name for e in owned if e.instrumented] == []
    assert [e.name for e in others if e.instrumented] == ["urllib3", "httpx2", "grpc_client"]


def test_distro_survives_a_broken_instrumentor(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from otel_trader.integrations import distro

    monkeypatch.setattr(distro, "_configured_active", True)
    distro.OtelTraderDistro().load_instrumentor(FakeEntryPoint("broken", RuntimeError("boom")))
    assert "instrumentation 'broken' failed and is skipped: boom" in caplog.text
    # The loader's own handling of a library that is not installed stays in charge.
    with pytest.raises(ModuleNotFoundError):
        distro.OtelTraderDistro().load_instrumentor(FakeEntryPoint("absent", ModuleNotFoundError("absent")))


def test_distro_loads_nothing_when_telemetry_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_trader.integrations import distro

    monkeypatch.setattr(distro, "_configured_active", False)
    entry_point = FakeEntryPoint("requests")
    distro.OtelTraderDistro().load_instrumentor(entry_point)
    assert not entry_point.instrumented


def test_our_configurator_runs_even_when_listed_after_the_sdk_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """With opentelemetry-distro installed too, entry-point order must not pick the SDK's configurator."""
    from opentelemetry.distro import OpenTelemetryConfigurator
    from opentelemetry.instrumentation.auto_instrumentation import _load

    from otel_trader.integrations.distro import OtelTraderConfigurator, OtelTraderDistro

    real = _load.entry_points

    def reversed_entry_points(**kwargs: Any) -> list[Any]:
        return list(reversed(list(real(**kwargs))))

    monkeypatch.setattr(_load, "entry_points", reversed_entry_points)
    # Record the variables the distro sets so monkeypatch restores them.
    for name in ("TELEMETRY_ENABLED", "OTEL_PYTHON_CONFIGURATOR", "OTEL_PYTHON_DISTRO"):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    monkeypatch.setenv("OTEL_PYTHON_DISTRO", "otel_trader")
    calls: list[str] = []
    monkeypatch.setattr(OtelTraderConfigurator, "_configure", lambda self, **kw: calls.append("otel_trader"))
    monkeypatch.setattr(OpenTelemetryConfigurator, "_configure", lambda self, **kw: calls.append("sdk"))

    distro = _load._load_distro()
    assert isinstance(distro, OtelTraderDistro)
    distro.configure()
    _load._load_configurators()
    assert calls == ["otel_trader"]
    assert os.environ["OTEL_PYTHON_CONFIGURATOR"] == "otel_trader"


def test_disabled_instrumentations_from_the_standard_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """OTEL_PYTHON_DISABLED_INSTRUMENTATIONS names contrib instrumentations too: ours are used, the rest ignored."""
    from otel_trader import ConfigError, TelemetryConfig

    for name in ("TELEMETRY_DISABLED_INSTRUMENTATIONS", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "urllib3, Redis ,flask,aiohttp-client")
    config = TelemetryConfig()
    assert config.disabled_instrumentations == ["redis", "aiohttp"]  # the contrib name of ours counts
    assert not config.integration_enabled("redis") and config.integration_enabled("httpx")

    monkeypatch.setenv("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "*")
    assert not TelemetryConfig().integration_enabled("fastapi")

    # A typo in otel-trader's own variable (which wins over the standard one) is still an error.
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("TELEMETRY_DISABLED_INSTRUMENTATIONS", "reddis")
    with pytest.raises(ConfigError, match="TELEMETRY_DISABLED_INSTRUMENTATIONS='reddis'"):
        TelemetryConfig()
    monkeypatch.delenv("TELEMETRY_DISABLED_INSTRUMENTATIONS")
    with pytest.raises(ConfigError, match="argument disabled_instrumentations"):
        TelemetryConfig(disabled_instrumentations="nope")


@pytest.mark.timeout(60)
def test_explicit_instrument_app_under_opentelemetry_instrument_counts_once(launcher: Launcher) -> None:
    """An app that calls otel_trader.instrument_app itself, run under opentelemetry-instrument."""
    app = launcher.uvicorn(
        "dead_collector_app", clean_env(TELEMETRY_EXPORTER="none", OTEL_SERVICE_NAME=SERVICE), instrument=True
    )
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for _ in range(4):
            assert client.get("/quote/BTC").status_code == 200
        text = client.get("/metrics").text
    (count,) = [s.value for s in samples(text, "http_requests") if s.name == "http_requests_total"]
    assert count == 4


# -- the rule: opentelemetry-instrument means on, unless said otherwise ------------------------


@pytest.mark.timeout(60)
def test_explicit_false_wins_under_opentelemetry_instrument(launcher: Launcher) -> None:
    app = launcher.uvicorn("zero_code_app", clean_env(TELEMETRY_ENABLED="false"), instrument=True)
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert client.get("/orders/BTC").status_code == 200
        assert client.get("/metrics").status_code == 404


@pytest.mark.timeout(60)
def test_unset_means_on_under_opentelemetry_instrument(launcher: Launcher) -> None:
    app = launcher.uvicorn("zero_code_app", clean_env(TELEMETRY_EXPORTER="none"), instrument=True)
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert client.get("/orders/BTC").status_code == 200
        assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("distro_first", ["otel_trader", "distro"])
@pytest.mark.parametrize("configurator_first", ["otel_trader", "configurator"])
def test_same_outcome_whichever_entry_points_come_first(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, distro_first: str, configurator_first: str
) -> None:
    """opentelemetry-distro installed next to us, in each entry-point order the loader may see."""
    from opentelemetry.distro import OpenTelemetryConfigurator
    from opentelemetry.instrumentation.auto_instrumentation import _load

    from otel_trader.integrations import distro as ours

    real = _load.entry_points

    def ordered(**kwargs: Any) -> list[Any]:
        found = list(real(**kwargs))
        first = {"opentelemetry_distro": distro_first, "opentelemetry_configurator": configurator_first}.get(
            kwargs.get("group", "")
        )
        return sorted(found, key=lambda e: e.name != first) if first else found

    monkeypatch.setattr(_load, "entry_points", ordered)
    for name in (
        "TELEMETRY_ENABLED",
        "OTEL_PYTHON_CONFIGURATOR",
        "OTEL_PYTHON_DISTRO",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_LOGS_EXPORTER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ):
        monkeypatch.setenv(name, "x")
        monkeypatch.delenv(name)
    monkeypatch.setenv("TELEMETRY_ENV_FILE", "none")

    import otel_trader.sdk.manager as manager_module

    configured: list[Any] = []
    monkeypatch.setattr(manager_module, "configure", lambda config=None, **kw: configured.append(config))
    monkeypatch.setattr(OpenTelemetryConfigurator, "_configure", lambda self, **kw: configured.append("sdk"))
    monkeypatch.setattr(ours, "_configured_active", None)
    monkeypatch.setattr(ours, "_our_distro_ran", False)

    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        distro = _load._load_distro()
        distro.configure()
        _load._load_configurators()
        if configured != ["sdk"]:
            monkeypatch.setattr(ours, "_configured_active", True)
        ours.OtelTraderInstrumentor().instrument()  # the loader loads it after the configurators
    warned = [r.getMessage() for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.WARNING]
    if distro_first == "otel_trader":
        # Ours sets OTEL_PYTHON_CONFIGURATOR: our configurator whatever the order, and the
        # "on" rule applied by the configurator itself (TELEMETRY_ENABLED is unset).
        assert len(configured) == 1 and configured[0].enabled
        assert not warned
    else:
        assert len(warned) == 1 and "OTEL_PYTHON_DISTRO=otel_trader" in warned[0], warned
