"""Every otel-trader setting in one declarative table.

Each field names its environment variables (ours first, then the standard ``OTEL_*`` one),
its type, default and doc. Parsing, the error messages of :class:`ConfigError` and the README's
settings table are all derived from this one class.

Precedence, highest first: keyword arguments to :func:`otel_trader.configure` /
``TelemetryConfig(...)``, the otel-trader variable (``OTLP_ENDPOINT``), the standard
``OTEL_*`` variable (``OTEL_EXPORTER_OTLP_ENDPOINT``), the default. ``OTEL_SDK_DISABLED=true``
switches telemetry off whatever else says.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["ConfigError", "EnvSettings", "OtlpTarget", "TelemetryConfig", "env_vars", "settings_table_markdown"]


class ConfigError(ValueError):
    """A setting has a value otel-trader cannot use; the message names variable, value and what is accepted."""


def env_vars(*names: str) -> AliasChoices:
    """The environment variables a setting is read from, first found wins."""
    return AliasChoices(*names)


_env = env_vars


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _parse_key_values(value: Any) -> Any:
    """Parse ``k1=v1,k2=v2`` (the OTEL_*_HEADERS / OTEL_RESOURCE_ATTRIBUTES format)."""
    if not isinstance(value, str):
        return value
    from urllib.parse import unquote

    pairs: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected comma-separated key=value pairs, got item {item.strip()!r}")
        pairs[unquote(key.strip())] = unquote(val.strip())
    return pairs


def _from_standard_variable(value: list[str]) -> bool:
    """Whether ``disabled_instrumentations`` came from OTEL_PYTHON_DISABLED_INSTRUMENTATIONS.

    Validators do not learn which alias supplied a value; ours wins when both are set, so the
    value is the standard variable's exactly when ours is unset and the lists match.
    """
    env = {k.upper(): v for k, v in os.environ.items() if v.strip()}
    if "TELEMETRY_DISABLED_INSTRUMENTATIONS" in env:
        return False
    standard = env.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
    return standard is not None and _split_list(standard) == value


_ENDPOINT_RE = re.compile(
    r"^(?:(?P<scheme>https?|grpcs?)://)?"
    r"(?P<host>[A-Za-z0-9_.-]+|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>\d{1,5}))?"
    r"(?P<path>/(?!/)\S*)?$"
)

_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


class EnvSettings(BaseSettings):
    """Base of otel-trader's settings tables.

    Environment names are case-insensitive, an empty variable counts as unset, instances are
    frozen, and a bad value raises :class:`ConfigError` naming variable, value and what is accepted.
    """

    model_config = SettingsConfigDict(
        case_sensitive=False,
        env_ignore_empty=True,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _config_error(exc, values, type(self)) from None


class TelemetryConfig(EnvSettings):
    """otel-trader settings, read from the environment (see the README's settings table)."""

    enabled: bool = Field(
        False,
        validation_alias=_env("TELEMETRY_ENABLED"),
        description="Switch all telemetry on. Off by default: nothing is installed or exported.",
    )
    sdk_disabled: bool = Field(
        False,
        validation_alias=_env("OTEL_SDK_DISABLED"),
        description="Standard kill switch: `true` turns telemetry off even if TELEMETRY_ENABLED=true.",
    )
    service_name: str = Field(
        "unknown_service:python",
        validation_alias=_env("SERVICE_NAME", "OTEL_SERVICE_NAME"),
        description="`service.name` resource attribute; the Prometheus `job` label on the collector side.",
    )
    service_version: str | None = Field(
        None,
        validation_alias=_env("SERVICE_VERSION"),
        description="`service.version` resource attribute.",
    )
    environment: str = Field(
        "development",
        validation_alias=_env("ENVIRONMENT", "DEPLOYMENT_ENVIRONMENT"),
        description="`deployment.environment(.name)` resource attribute.",
    )
    resource_attributes: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        validation_alias=_env("OTEL_RESOURCE_ATTRIBUTES"),
        description="Extra resource attributes, `k1=v1,k2=v2`.",
    )
    exporter: Literal["otlp", "console", "none"] = Field(
        "otlp",
        validation_alias=_env("TELEMETRY_EXPORTER"),
        description="Where spans, metrics and logs go: `otlp`, `console` (stdout, for local runs) or `none` (only the in-process `/metrics`).",
    )
    otlp_endpoint: str = Field(
        "localhost:4317",
        validation_alias=_env("OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="Collector address: `host:port` or a URL. gRPC unless OTLP_PROTOCOL says otherwise or the port is 4318.",
    )
    otlp_protocol: Literal["grpc", "http/protobuf"] | None = Field(
        None,
        validation_alias=_env("OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        description="`grpc` or `http/protobuf`; unset: inferred from the endpoint (port 4318 means HTTP).",
    )
    otlp_headers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        validation_alias=_env("OTLP_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        description="Headers sent with every export, `k1=v1,k2=v2` (e.g. `signoz-ingestion-key=…`).",
    )
    otlp_insecure: bool | None = Field(
        None,
        validation_alias=_env("OTLP_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"),
        description="Plaintext instead of TLS. Unset: TLS for `https://` and port 443, plaintext otherwise.",
    )
    otlp_certificate: str | None = Field(
        None,
        validation_alias=_env("OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        description="CA bundle (PEM path) to verify the collector's TLS certificate.",
    )
    otlp_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        validation_alias=_env("OTLP_TIMEOUT_SECONDS"),
        description="Deadline of one export call, in seconds.",
    )
    traces_sampler: str = Field(
        "parentbased_traceidratio",
        validation_alias=_env("OTEL_TRACES_SAMPLER"),
        description="Sampler: " + ", ".join(f"`{s}`" for s in _SAMPLERS) + ".",
    )
    sample_ratio: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        validation_alias=_env("TRACE_SAMPLE_RATIO", "OTEL_TRACES_SAMPLER_ARG"),
        description="Share of new traces kept, 0 to 1 (for the `*traceidratio` samplers).",
    )
    metric_export_interval_seconds: float = Field(
        15.0,
        gt=0,
        le=3600,
        validation_alias=_env("METRIC_EXPORT_INTERVAL_SECONDS"),
        description="How often metrics are pushed over OTLP, in seconds. OTEL_METRIC_EXPORT_INTERVAL (milliseconds) is honoured when this is unset.",
    )
    prometheus_enabled: bool = Field(
        True,
        validation_alias=_env("PROMETHEUS_ENABLED"),
        description="Serve metrics in-process for Prometheus to scrape.",
    )
    metrics_path: str = Field(
        "/metrics",
        pattern=r"^/\S*$",
        validation_alias=_env("METRICS_PATH"),
        description="Path of the in-process Prometheus endpoint mounted by `instrument_app`.",
    )
    excluded_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/metrics", "/health"],
        validation_alias=_env("TELEMETRY_EXCLUDED_PATHS", "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS"),
        description="Path prefixes neither traced nor counted in RED metrics (comma list).",
    )
    disabled_instrumentations: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("TELEMETRY_DISABLED_INSTRUMENTATIONS", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"),
        description="Integrations to leave off: any of `fastapi`, `httpx`, `sqlalchemy`, `redis`, `logging`, or `*` for all. An unknown name in TELEMETRY_DISABLED_INSTRUMENTATIONS is an error (a typo); in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS it is ignored, since that list also names contrib instrumentations (`requests`, …) that `opentelemetry-instrument` skips.",
    )
    operation_spans: bool = Field(
        False,
        validation_alias=_env("FASTAPI_OPERATION_SPANS"),
        description="FastAPI ≥ 0.142 only: also trace dependency resolution, endpoint and serialization as child spans (≈ 3 extra spans per request).",
    )
    logs_enabled: bool = Field(
        True,
        validation_alias=_env("TELEMETRY_LOGS_ENABLED"),
        description="Export Python log records over OTLP (they always get `trace_id`/`span_id`).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO",
        validation_alias=_env("TELEMETRY_LOG_LEVEL"),
        description="Lowest level of log records exported over OTLP.",
    )
    redact_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("TELEMETRY_REDACT_KEYS"),
        description="Extra query/header/attribute key names whose values are replaced by `REDACTED` (comma list; added to the built-in list).",
    )
    shutdown_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=120,
        validation_alias=_env("TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS"),
        description="Hard deadline for `shutdown()` and interpreter exit to flush telemetry.",
    )
    signoz_url: str | None = Field(
        None,
        validation_alias=_env("SIGNOZ_URL"),
        description="SigNoz UI base URL, used to link trace ids (error reports).",
    )
    otel_metric_export_interval_ms: float | None = Field(
        None,
        gt=0,
        validation_alias=_env("OTEL_METRIC_EXPORT_INTERVAL"),
        description="Standard variable, milliseconds; used when METRIC_EXPORT_INTERVAL_SECONDS is unset.",
        exclude=True,
    )

    _split = field_validator(
        "excluded_paths", "disabled_instrumentations", "redact_keys", mode="before"
    )(classmethod(lambda cls, v: _split_list(v)))
    _kv = field_validator("resource_attributes", "otlp_headers", mode="before")(
        classmethod(lambda cls, v: _parse_key_values(v))
    )

    @field_validator("otlp_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str) -> str:
        match = _ENDPOINT_RE.match(value.strip())
        port = match and match.group("port")
        if not match or (port is not None and not 0 < int(port) < 65536):
            raise ValueError(
                "expected host:port or a URL like http://host:4317 / https://host:443 "
                "(port 1-65535)"
            )
        return value.strip()

    @field_validator("traces_sampler")
    @classmethod
    def _check_sampler(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in _SAMPLERS:
            raise ValueError("expected one of " + ", ".join(_SAMPLERS))
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("disabled_instrumentations")
    @classmethod
    def _check_instrumentations(cls, value: list[str]) -> list[str]:
        known = {"fastapi", "httpx", "sqlalchemy", "redis", "logging", "*"}
        names = [v.lower() for v in value]
        unknown = [v for v, name in zip(value, names, strict=True) if name not in known]
        if unknown and not _from_standard_variable(value):
            raise ValueError(f"unknown integration(s) {unknown}; expected any of {sorted(known)}")
        # The standard variable is shared with opentelemetry-instrument, which reads it itself;
        # only the names that are ours mean anything here.
        return [name for name in names if name in known]

    @property
    def active(self) -> bool:
        """Whether telemetry is on (TELEMETRY_ENABLED and not OTEL_SDK_DISABLED)."""
        return self.enabled and not self.sdk_disabled

    @property
    def metric_export_interval(self) -> float:
        """Seconds between OTLP metric exports, honouring OTEL_METRIC_EXPORT_INTERVAL (ms)."""
        if "metric_export_interval_seconds" not in self.model_fields_set and self.otel_metric_export_interval_ms:
            return self.otel_metric_export_interval_ms / 1000.0
        return self.metric_export_interval_seconds

    @property
    def otlp(self) -> OtlpTarget:
        """The resolved OTLP destination: protocol, URL, TLS."""
        return OtlpTarget.resolve(self.otlp_endpoint, self.otlp_protocol, self.otlp_insecure)

    def integration_enabled(self, name: str) -> bool:
        """Whether auto-instrumentation ``name`` is switched on."""
        return name not in self.disabled_instrumentations and "*" not in self.disabled_instrumentations


@dataclass(frozen=True)
class OtlpTarget:
    """Where and how OTLP is sent."""

    protocol: Literal["grpc", "http/protobuf"]
    #: gRPC: ``host:port``; HTTP: base URL without the ``/v1/<signal>`` suffix.
    endpoint: str
    insecure: bool

    @classmethod
    def resolve(cls, raw: str, protocol: str | None, insecure: bool | None) -> OtlpTarget:
        """Derive protocol, address and TLS from an endpoint as users write it."""
        match = _ENDPOINT_RE.match(raw)
        assert match is not None  # validated by TelemetryConfig
        scheme, host = match.group("scheme"), match.group("host")
        port = int(match.group("port")) if match.group("port") else None
        path = (match.group("path") or "").rstrip("/")
        tls_scheme = scheme in ("https", "grpcs")
        if protocol is None:
            protocol = "http/protobuf" if port == 4318 or (scheme in ("http", "https") and path) else "grpc"
        if port is None:
            port = 443 if tls_scheme else (4318 if protocol == "http/protobuf" else 4317)
        if insecure is None:
            insecure = not (tls_scheme or port == 443)
        if protocol == "grpc":
            endpoint = f"{host}:{port}"
        else:
            for suffix in ("/v1/traces", "/v1/metrics", "/v1/logs"):
                path = path.removesuffix(suffix)
            endpoint = f"{'http' if insecure else 'https'}://{host}:{port}{path}"
        return cls(protocol=protocol, endpoint=endpoint, insecure=insecure)  # type: ignore[arg-type]


def _env_names(field: str, model: type[BaseSettings] | None = None) -> list[str]:
    alias = (model or TelemetryConfig).model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [field.upper()]


def _field_of(loc: str, model: type[BaseSettings] | None = None) -> str:
    # pydantic reports an aliased field under its first alias, not the field name.
    for name in (model or TelemetryConfig).model_fields:
        if loc == name or loc in _env_names(name, model):
            return name
    return loc


_ACCEPTED = {
    "bool_parsing": "expected true or false (also 1/0, yes/no, on/off)",
    "bool_type": "expected true or false (also 1/0, yes/no, on/off)",
    "float_parsing": "expected a number",
}


def _config_error(
    exc: ValidationError, kwargs: dict[str, Any], model: type[BaseSettings] | None = None
) -> ConfigError:
    """A ConfigError naming variable (or argument), value and what is accepted, for any settings class."""
    model = model or TelemetryConfig
    lines = []
    for err in exc.errors():
        field = _field_of(str(err["loc"][0]) if err["loc"] else "", model)
        names = _env_names(field, model) if field in model.model_fields else [field]
        if field in kwargs:
            source = f"argument {field}"
        else:
            present = {k.upper() for k in os.environ}
            source = next((n for n in names if n.upper() in present), names[0])
        accepted = _ACCEPTED.get(err["type"]) or err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        # A secret (a bot token) must not end up in a traceback or a log line.
        shown = "'<hidden>'" if _is_secret(model, field) and value is not None else repr(value)
        lines.append(f"{source}={shown} is not valid: {accepted}")
    return ConfigError("; ".join(lines))


def _is_secret(model: type[BaseSettings], field: str) -> bool:
    info = model.model_fields.get(field)
    return info is not None and "SecretStr" in str(info.annotation)


def _type_text(annotation: Any) -> str:
    args = [a for a in getattr(annotation, "__args__", ()) if a is not type(None)]
    origin = getattr(annotation, "__origin__", None)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in annotation.__args__)
    if origin is Annotated:
        return _type_text(args[0])
    if origin in (list, dict):
        return "comma list" if origin is list else "`k=v` list"
    if args and origin is not None and type(None) in annotation.__args__:
        return _type_text(args[0])
    if len(args) > 1 or (args and type(None) in getattr(annotation, "__args__", ())):
        return _type_text(args[0])
    return getattr(annotation, "__name__", str(annotation))


def settings_table_markdown(model: type[BaseSettings] | None = None) -> str:
    """The README's settings table, derived from :class:`TelemetryConfig` (or another settings class)."""
    model = model or TelemetryConfig
    rows = ["| variable | type | default | meaning |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        env = " / ".join(f"`{n}`" for n in _env_names(name, model))
        annotation = _type_text(field.annotation)
        if field.default_factory is not None:
            default: Any = field.default_factory()  # type: ignore[call-arg]
            default = ",".join(default) if isinstance(default, list) else (default or "")
        else:
            default = field.default
        default_text = "" if default in (None, "", {}) else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        rows.append(f"| {env} | {annotation} | {default_text} | {field.description} |")
    return "\n".join(rows)


def _readme_tables() -> dict[str, type[BaseSettings]]:
    from .telegram.settings import TelegramSettings  # imported late: it imports this module

    return {"settings-table": TelemetryConfig, "telegram-settings-table": TelegramSettings}


def update_readme(path: str) -> bool:
    """Rewrite each generated settings table between its README markers; True when the file changed."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    new = text
    for marker, model in _readme_tables().items():
        begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
        head, found, rest = new.partition(begin)
        _, found_end, tail = rest.partition(end)
        if not found or not found_end:
            raise SystemExit(f"{path} lacks the {begin} … {end} markers")
        new = f"{head}{begin}\n{settings_table_markdown(model)}\n{end}{tail}"
    if new != text:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
    return new != text


if __name__ == "__main__":  # python -m otel_trader.settings README.md
    import sys

    update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md")
