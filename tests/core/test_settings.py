"""TelemetryConfig: parsing, precedence, endpoint resolution and the errors users see."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_trader import ConfigError, TelemetryConfig
from otel_trader.settings import OtlpTarget
from scripts.settings_table import settings_table_markdown

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TELEMETRY_ENABLED": "maybe"}, "TELEMETRY_ENABLED='maybe' is not valid: expected true or false"),
        ({"OTLP_ENDPOINT": "http//x:abc"}, "OTLP_ENDPOINT='http//x:abc' is not valid: expected host:port or a URL"),
        ({"TRACE_SAMPLE_RATIO": "2"}, "TRACE_SAMPLE_RATIO='2' is not valid: Input should be less than or equal to 1"),
        ({"OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG='2' is not valid: Input should be less than or equal to 1"),
        ({"OTLP_ENDPOINT": "collector:99999"}, "OTLP_ENDPOINT='collector:99999' is not valid"),
        ({"OTLP_HEADERS": "novalue"}, "OTLP_HEADERS='<hidden>' is not valid: expected comma-separated key=value pairs; item 1 is not one"),
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER='sometimes' is not valid: expected one of always_on"),
        ({"TELEMETRY_EXPORTER": "jaeger"}, "TELEMETRY_EXPORTER='jaeger' is not valid: Input should be 'otlp', 'console' or 'none'"),
        ({"METRIC_EXPORT_INTERVAL_SECONDS": "soon"}, "METRIC_EXPORT_INTERVAL_SECONDS='soon' is not valid: expected a number"),
    ],
)
def test_bad_values_name_variable_value_and_accepted(reset_otel, monkeypatch, env, expected):
    monkeypatch.setenv("TELEMETRY_ENABLED", env.get("TELEMETRY_ENABLED", "true"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as err:
        TelemetryConfig()
    assert expected in str(err.value)


def test_bad_keyword_argument_is_named_as_argument(reset_otel):
    with pytest.raises(ConfigError, match=r"argument sample_ratio=1.5 is not valid"):
        TelemetryConfig(sample_ratio=1.5)


def test_defaults_are_off_and_local(reset_otel):
    config = TelemetryConfig()
    assert config.active is False
    assert config.otlp == OtlpTarget(protocol="grpc", endpoint="localhost:4317", insecure=True)
    assert config.sample_ratio == 1.0
    assert config.traces_sampler == "parentbased_traceidratio"


def test_precedence_argument_then_ours_then_otel(reset_otel, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "otel-var:4317")
    assert TelemetryConfig().otlp_endpoint == "otel-var:4317"
    monkeypatch.setenv("OTLP_ENDPOINT", "ours:4317")
    assert TelemetryConfig().otlp_endpoint == "ours:4317"
    assert TelemetryConfig(otlp_endpoint="arg:4317").otlp_endpoint == "arg:4317"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-otel")
    assert TelemetryConfig().service_name == "from-otel"
    monkeypatch.setenv("SERVICE_NAME", "from-ours")
    assert TelemetryConfig().service_name == "from-ours"


def test_otel_sdk_disabled_wins(reset_otel, monkeypatch):
    monkeypatch.setenv("TELEMETRY_ENABLED", "true")
    assert TelemetryConfig().active
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not TelemetryConfig().active


def test_empty_variable_means_unset(reset_otel, monkeypatch):
    monkeypatch.setenv("OTLP_ENDPOINT", "")
    assert TelemetryConfig().otlp_endpoint == "localhost:4317"


@pytest.mark.parametrize(
    ("endpoint", "protocol", "insecure", "expected"),
    [
        ("localhost:4317", None, None, ("grpc", "localhost:4317", True)),
        ("collector:4318", None, None, ("http/protobuf", "http://collector:4318", True)),
        ("http://collector:4318/v1/traces", None, None, ("http/protobuf", "http://collector:4318", True)),
        ("ingest.us.signoz.cloud:443", None, None, ("grpc", "ingest.us.signoz.cloud:443", False)),
        ("https://ingest.eu.signoz.cloud", None, None, ("grpc", "ingest.eu.signoz.cloud:443", False)),
        ("https://otel.example.com:4318", None, None, ("http/protobuf", "https://otel.example.com:4318", False)),
        ("collector:4317", "http/protobuf", None, ("http/protobuf", "http://collector:4317", True)),
        ("signoz:443", None, True, ("grpc", "signoz:443", True)),
        ("[::1]:4317", None, None, ("grpc", "[::1]:4317", True)),
    ],
)
def test_endpoint_resolution(endpoint, protocol, insecure, expected):
    target = OtlpTarget.resolve(endpoint, protocol, insecure)
    assert (target.protocol, target.endpoint, target.insecure) == expected


def test_key_value_lists_and_comma_lists(reset_otel, monkeypatch):
    monkeypatch.setenv("OTLP_HEADERS", "signoz-ingestion-key=abc%3D%3D, x-team=desk")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=quant,region=ap-northeast-2")
    monkeypatch.setenv("TELEMETRY_EXCLUDED_PATHS", "/metrics, /health ,/ready")
    config = TelemetryConfig()
    assert config.otlp_headers == {"signoz-ingestion-key": "abc==", "x-team": "desk"}
    assert config.resource_attributes == {"team": "quant", "region": "ap-northeast-2"}
    assert config.excluded_paths == ["/metrics", "/health", "/ready"]


def test_metric_interval_from_standard_variable_in_milliseconds(reset_otel, monkeypatch):
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "5000")
    assert TelemetryConfig().metric_export_interval == 5.0
    monkeypatch.setenv("METRIC_EXPORT_INTERVAL_SECONDS", "2")
    assert TelemetryConfig().metric_export_interval == 2.0


def test_readme_settings_tables_are_generated_from_the_tables():
    from otel_trader.telegram.settings import TelegramSettings

    readme = (ROOT / "README.md").read_text()
    assert settings_table_markdown() in readme, "README settings table is stale: run `make readme`"
    assert settings_table_markdown(TelegramSettings) in readme, "Telegram table is stale: run `make readme`"
