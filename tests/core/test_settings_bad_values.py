"""Every setting through bad values, with telemetry off (never stops the app) and on (a named error).

The property, not one value: for each variable of the settings table and a list of malformed,
out-of-range, whitespace, non-ASCII and secret-carrying values,
- telemetry off: ``TelemetryConfig()`` and ``instrument_app`` never raise; one warning names
  what was ignored, never a secret;
- telemetry on: either a ``ConfigError`` naming the variable (never a secret), or a value the
  specification allows and we document (then ``configure()`` works with it).
"""

from __future__ import annotations

import logging
import math

import pytest
from pydantic import AliasChoices

from otel_trader import ConfigError, TelemetryConfig
from otel_trader import settings as settings_module

SECRET = "hunter2-planted"

GENERIC_BAD = [
    "garbage",
    "-1",
    "0",
    "1e400",
    "-1e400",
    "nan",
    "1e-9",
    "1e30",
    "9" * 30,
    "１２",  # full-width digits
    "²",
    "0x10",
    "true false",
    "a\nb",
    "\x01\x7f",
    "  padded  ",
]
BY_FIELD = {
    "otlp_endpoint": [
        "http//x:abc",
        "collector:99999",
        "collector:0",
        "ftp://collector:21",
        f"http://user:{SECRET}@collector:4317",
        "http://collector:4317/otlp",
        "http://[::1:4317",
        "collector:4317 extra",
    ],
    "otlp_headers": [
        "novalue",
        f"Authorization=Bearer {SECRET}\nX-Injected: 1",
        f"api-key={SECRET}é",
        f"bad key={SECRET}",
        f"={SECRET}",
        f"Authorization {SECRET}",
    ],
    "otlp_certificate": ["/nonexistent/ca.pem", "/", "/etc/shadow-missing.pem"],
    "resource_attributes": ["novalue", "=x", "a=b,,c"],
    "traces_sampler": ["sometimes", "ALWAYS_MAYBE", "parentbased"],
    "otlp_protocol": ["grpcs", "http", "HTTP/PROTOBUF/2"],
    "exporter": ["jaeger", "zipkin", "OTLP2"],
    "log_level": ["LOUD", "5"],
    "disabled_instrumentations": ["fastapi,typo"],
    "metrics_path": ["metrics", "/with space"],
}
#: Values the OpenTelemetry specification defines and other SDKs accept: used, with a warning.
ACCEPTED_STANDARD = {
    ("otlp_protocol", "http/json"),
    ("traces_sampler", "jaeger_remote"),
    ("traces_sampler", "parentbased_jaeger_remote"),
    ("traces_sampler", "xray"),
}


def _variables() -> list[tuple[str, str]]:
    rows = []
    for name, info in TelemetryConfig.model_fields.items():
        if name == "enabled":
            continue
        alias = info.validation_alias
        names = [str(c) for c in alias.choices] if isinstance(alias, AliasChoices) else [name.upper()]
        rows.extend((name, var) for var in names)
    return rows


def _cases() -> list[tuple[str, str, str]]:
    cases = []
    for field, var in _variables():
        for value in GENERIC_BAD + BY_FIELD.get(field, []):
            cases.append((field, var, value))
    for field, value in sorted(ACCEPTED_STANDARD):
        var = {"otlp_protocol": "OTEL_EXPORTER_OTLP_PROTOCOL", "traces_sampler": "OTEL_TRACES_SAMPLER"}[field]
        cases.append((field, var, value))
    return cases


CASES = _cases()


@pytest.fixture
def fresh_warnings():
    settings_module._warned_ignored.clear()
    yield
    settings_module._warned_ignored.clear()


def _otel_trader_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "otel_trader" and r.levelno >= logging.WARNING]


def test_the_case_list_covers_every_setting():
    covered = {field for field, _, _ in CASES}
    assert covered == set(TelemetryConfig.model_fields) - {"enabled"}
    assert len(CASES) > 600


@pytest.mark.parametrize("switch", [None, "false", "0", "off"])
def test_off_means_off_for_every_bad_value(reset_otel, monkeypatch, caplog, fresh_warnings, switch):
    failures = []
    for _field, var, value in CASES:
        monkeypatch.delenv(var, raising=False)
        if switch is not None:
            monkeypatch.setenv("TELEMETRY_ENABLED", switch)
        monkeypatch.setenv(var, value)
        caplog.clear()
        try:
            config = TelemetryConfig()
        except Exception as exc:  # noqa: BLE001 - any exception is the failure being counted
            failures.append(f"{var}={value!r}: {type(exc).__name__}: {exc}")
            continue
        finally:
            monkeypatch.delenv(var)
        assert not config.active
        text = " ".join(r.getMessage() for r in _otel_trader_records(caplog))
        assert SECRET not in text, (var, value, text)
    assert not failures, f"{len(failures)} of {len(CASES)} bad values stop an app with telemetry off:\n" + "\n".join(
        failures[:20]
    )


def test_off_warns_once_naming_the_ignored_variables(reset_otel, monkeypatch, caplog, fresh_warnings):
    monkeypatch.setenv("OTLP_ENDPOINT", f"http://user:{SECRET}@collector:4317")
    monkeypatch.setenv("TRACE_SAMPLE_RATIO", "7")
    monkeypatch.setenv("OTLP_HEADERS", f"Authorization=Bearer {SECRET}\nX-Injected: 1")
    for _ in range(3):
        config = TelemetryConfig()
    assert config.otlp_endpoint == "localhost:4317" and config.sample_ratio == 1.0  # defaults used
    records = _otel_trader_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    for var in ("OTLP_ENDPOINT", "TRACE_SAMPLE_RATIO", "OTLP_HEADERS", "TELEMETRY_ENABLED=true"):
        assert var in message
    assert SECRET not in message


def test_off_with_the_kill_switch_also_ignores_bad_values(reset_otel, monkeypatch, fresh_warnings):
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setenv("TRACE_SAMPLE_RATIO", "7")
    assert not TelemetryConfig().active


@pytest.mark.parametrize("value", [" ", "\t", "  \n"])
def test_blank_standard_switch_is_unset(reset_otel, monkeypatch, value):
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("OTEL_SDK_DISABLED", value)
    assert TelemetryConfig().active


def test_unrecognised_sdk_disabled_is_false_with_a_warning(reset_otel, monkeypatch, caplog):
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "perhaps")
    assert TelemetryConfig().active
    assert any("OTEL_SDK_DISABLED" in r.getMessage() for r in _otel_trader_records(caplog))


def test_on_every_bad_value_is_a_named_error_or_a_documented_standard_value(reset_otel, monkeypatch):
    accepted = []
    problems = []
    for field, var, value in CASES:
        monkeypatch.setenv("TELEMETRY_ENABLED", "true")
        monkeypatch.setenv(var, value)
        try:
            config = TelemetryConfig()
        except ConfigError as exc:
            message = str(exc)
            if not message.startswith(var) and f"; {var}=" not in message:
                problems.append(f"{var}={value!r}: error does not name the variable: {message}")
            if SECRET in message:
                problems.append(f"{var}={value!r}: secret in the error: {message}")
            continue
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{var}={value!r}: raw {type(exc).__name__}: {exc}")
            continue
        finally:
            monkeypatch.delenv(var)
        accepted.append((field, var, value, config))
    assert not problems, "\n".join(problems[:20])
    for field, var, value, config in accepted:
        parsed = getattr(config, field)
        # What is accepted is a sane value: the documented standard ones, free text, or padded numbers.
        if isinstance(parsed, float):
            assert math.isfinite(parsed), (var, value, parsed)
        info = TelemetryConfig.model_fields[field]
        for bound in info.metadata:
            for attr, check in (("ge", lambda a, b: a >= b), ("le", lambda a, b: a <= b), ("gt", lambda a, b: a > b)):
                limit = getattr(bound, attr, None)
                if limit is not None and isinstance(parsed, (int, float)):
                    assert check(parsed, limit), (var, value, parsed)


@pytest.mark.parametrize(("field", "var", "value"), sorted(ACCEPTED_STANDARD and [c for c in CASES if (c[0], c[2]) in ACCEPTED_STANDARD]))
def test_standard_values_we_lack_are_used_with_a_warning(reset_otel, monkeypatch, caplog, field, var, value):
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import otel_trader
    from otel_trader.sdk.exporters import build_exporters

    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    monkeypatch.setenv(var, value)
    config = TelemetryConfig()
    exporter = InMemorySpanExporter()
    otel_trader.configure(config, span_exporter=exporter, metric_readers=[InMemoryMetricReader()])
    if field == "otlp_protocol":
        assert config.otlp.protocol == "http/protobuf"
        build_exporters(config)
    with otel_trader.trace_operation("still-traced"):
        pass
    otel_trader.get_telemetry_manager().flush()
    assert [s.name for s in exporter.get_finished_spans()] == ["still-traced"]
    assert any(value in r.getMessage() for r in _otel_trader_records(caplog))


def test_instrument_app_with_every_bad_value_at_once_and_telemetry_off(reset_otel, monkeypatch, fresh_warnings):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    import otel_trader

    seen = set()
    for _, var, value in CASES:
        if var not in seen:
            seen.add(var)
            monkeypatch.setenv(var, value)
    monkeypatch.setenv("TELEMETRY_ENABLED", "false")
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    otel_trader.instrument_app(app)
    with TestClient(app) as client:
        assert client.get("/ping").json() == {"ok": True}


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"OTLP_CERTIFICATE": "/nonexistent/ca.pem"}, "OTLP_CERTIFICATE='/nonexistent/ca.pem' is not valid: expected a readable PEM file"),
        ({"METRIC_EXPORT_INTERVAL_SECONDS": "1e-9"}, "METRIC_EXPORT_INTERVAL_SECONDS='1e-9' is not valid: Input should be greater than or equal to 0.1"),
        ({"OTEL_METRIC_EXPORT_INTERVAL": "1e30"}, "OTEL_METRIC_EXPORT_INTERVAL='1e30' is not valid: Input should be less than or equal to 3600000"),
        ({"OTLP_HEADERS": "X-Team=a\nb"}, "the value of header 'x-team' holds a line break"),
        ({"OTLP_ENDPOINT": "http://collector:4317/otlp"}, "a URL path means OTLP/HTTP but port 4317 is OTLP/gRPC"),
        ({"OTEL_BSP_SCHEDULE_DELAY": "99999999999999999999"}, "OTEL_BSP_SCHEDULE_DELAY="),
        ({"OTEL_BSP_MAX_QUEUE_SIZE": "-5"}, "OTEL_BSP_MAX_QUEUE_SIZE="),
    ],
)
def test_harmful_values_are_named_errors(reset_otel, monkeypatch, env, fragment):
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        TelemetryConfig()
    assert fragment in str(err.value)


def test_header_names_are_lower_cased_for_grpc(reset_otel, monkeypatch):
    monkeypatch.setenv("OTLP_HEADERS", "Signoz-Ingestion-Key=abc,X-Team=desk")
    assert TelemetryConfig().otlp_headers == {"signoz-ingestion-key": "abc", "x-team": "desk"}


def test_sdk_batch_and_limit_variables_reach_the_sdk(reset_otel, monkeypatch):
    from otel_trader.sdk.pipeline import batch_options, build_span_limits

    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "250")
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "64")
    config = TelemetryConfig()
    assert batch_options(config, "bsp") == {
        "schedule_delay_millis": 250,
        "max_queue_size": 100,
        "max_export_batch_size": 100,  # capped at the queue
        "export_timeout_millis": 30000,
    }
    limits = build_span_limits(config)
    assert limits.max_span_attribute_length == 64 and limits.max_attribute_length == 64
    assert build_span_limits(TelemetryConfig(attribute_value_length_limit=4096)).max_attribute_length == 4096
