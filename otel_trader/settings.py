# Long because it is the declarative table of every setting (one field each, with its env vars,
# type, default and doc) plus the validators and error wording that go with it.
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
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AliasChoices, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "ConfigError",
    "EnvSettings",
    "OtlpTarget",
    "TelemetryConfig",
    "env_vars",
]


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
    for position, item in enumerate(value.split(","), start=1):
        if not item.strip():
            continue
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            # The position, not the item: header items carry credentials.
            raise ValueError(f"expected comma-separated key=value pairs; item {position} is not one")
        pairs[unquote(key.strip())] = unquote(val.strip())
    return pairs


#: Names the dotenv file the settings tables read; ``none`` (or empty) reads none.
ENV_FILE_VARIABLE = "TELEMETRY_ENV_FILE"
_warned_env_files: set[str] = set()


def env_file() -> str | None:
    """The dotenv file otel-trader's settings read: ``TELEMETRY_ENV_FILE``, else ``.env`` in the working directory.

    The real environment wins over the file. ``TELEMETRY_ENV_FILE=none`` (or ``off``, ``false``,
    empty) reads no file; a named file that does not exist is warned about once.
    """
    raw = os.environ.get(ENV_FILE_VARIABLE)
    if raw is None:
        return ".env"
    path = raw.strip()
    if path.lower() in ("", "none", "off", "false", "0"):
        return None
    if not os.path.isfile(path) and path not in _warned_env_files:
        _warned_env_files.add(path)
        import logging

        logging.getLogger("otel_trader").warning(
            "otel-trader: %s=%s names no readable file; settings come from the environment only",
            ENV_FILE_VARIABLE,
            path,
        )
    return path


def _from_standard_variable(value: list[str]) -> bool:
    """Whether ``disabled_instrumentations`` came from OTEL_PYTHON_DISABLED_INSTRUMENTATIONS.

    Validators do not learn which alias supplied a value; ours wins when both are set, so the
    value is the standard variable's exactly when ours is unset and the lists match.
    """
    env = {k.upper(): v for k, v in _dotenv_values().items() if v and v.strip()}
    env.update({k.upper(): v for k, v in os.environ.items() if v.strip()})
    if "TELEMETRY_DISABLED_INSTRUMENTATIONS" in env:
        return False
    standard = env.get("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS")
    return standard is not None and _split_list(standard) == value


def _dotenv_values() -> dict[str, str | None]:
    path = env_file()
    if path is None or not os.path.isfile(path):
        return {}
    from dotenv import dotenv_values

    return dict(dotenv_values(path))


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
#: Valid OTEL_TRACES_SAMPLER values of the specification that OpenTelemetry Python lacks.
_UNSUPPORTED_SAMPLERS = ("jaeger_remote", "parentbased_jaeger_remote", "xray")
#: gRPC metadata keys (lower case) and printable-ASCII values; also valid HTTP header names.
_HEADER_NAME_RE = re.compile(r"^[0-9a-z_.-]+$")
_HEADER_VALUE_RE = re.compile(r"^[\x20-\x7e]*$")
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


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

    #: The boolean field that switches this table's feature on. While it is off, only the
    #: switch itself is validated: an invalid value elsewhere is replaced by its default and
    #: named in one warning, so a half-configured feature that is off never stops the app.
    _switch_field: ClassVar[str | None] = None

    def __init__(self, **values: Any) -> None:
        dotenv = env_file()
        try:
            super().__init__(_env_file=dotenv, **values)
        except ValidationError as exc:
            error = _config_error(exc, values, type(self))
            bad = _failed_fields(exc, type(self))
            # Explicit arguments are code, not environment: a wrong one is always an error.
            if self._switch_field is None or not bad or bad & (set(values) | {self._switch_field, ""}):
                raise error from None
            fallback = {name: _default_of(type(self), name) for name in bad}
            try:
                super().__init__(_env_file=dotenv, **{**values, **fallback})
            except ValidationError:
                raise error from None
            if self.switched_on():
                raise error from None
            _warn_ignored(type(self), self._switch_field, str(error))

    def switched_on(self) -> bool:
        """Whether the feature this table configures is on (its switch field, when it has one)."""
        return self._switch_field is None or bool(getattr(self, self._switch_field))

    @model_validator(mode="before")
    @classmethod
    def _drop_blank(cls, data: Any) -> Any:
        # A variable holding only spaces (`OTEL_SDK_DISABLED=" "`) is unset, like an empty one.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return data


class TelemetryConfig(EnvSettings):
    """otel-trader settings, read from the environment (see the README's settings table).

    While telemetry is off (TELEMETRY_ENABLED unset or false, or OTEL_SDK_DISABLED=true) only
    those two switches are validated; other invalid values are named in one warning.
    """

    _switch_field: ClassVar[str | None] = "enabled"

    enabled: bool = Field(
        False,
        validation_alias=_env("TELEMETRY_ENABLED"),
        description="Switch all telemetry on. Off by default: nothing is installed or exported.",
    )
    sdk_disabled: bool = Field(
        False,
        validation_alias=_env("OTEL_SDK_DISABLED"),
        description="Standard kill switch: `true` turns telemetry off even if TELEMETRY_ENABLED=true. Any other value means false (an unrecognised one with a warning), as the OpenTelemetry specification says.",
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
    otlp_protocol: Literal["grpc", "http/protobuf", "http/json"] | None = Field(
        None,
        validation_alias=_env("OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        description="`grpc` or `http/protobuf`; unset: inferred from the endpoint (port 4318 or a URL path means HTTP). `http/json` is sent as `http/protobuf` (OpenTelemetry Python has no JSON exporter; collectors accept both on the same port), with a warning.",
    )
    otlp_endpoint: str = Field(
        "localhost:4317",
        validation_alias=_env("OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="Collector address: `host:port` or a URL. gRPC unless OTLP_PROTOCOL says otherwise, the port is 4318 or the URL has a path; a path on port 4317 is an error.",
    )
    otlp_headers: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        validation_alias=_env("OTLP_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"),
        description="Headers sent with every export, `k1=v1,k2=v2` (e.g. `signoz-ingestion-key=…`). Names are lower-cased (gRPC metadata requires it); values must be printable ASCII. Values never appear in errors or logs.",
        json_schema_extra={"secret": True},
    )
    otlp_insecure: bool | None = Field(
        None,
        validation_alias=_env("OTLP_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"),
        description="Plaintext instead of TLS. Unset: TLS for `https://` and port 443, plaintext otherwise.",
    )
    otlp_certificate: str | None = Field(
        None,
        validation_alias=_env("OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        description="CA bundle (PEM path) to verify the collector's TLS certificate; must be a readable file.",
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
        description="Sampler: "
        + ", ".join(f"`{s}`" for s in _SAMPLERS)
        + ". The specification's "
        + ", ".join(f"`{s}`" for s in _UNSUPPORTED_SAMPLERS)
        + " are not available in OpenTelemetry Python: the default is used, with a warning.",
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
        ge=0.1,
        le=3600,
        validation_alias=_env("METRIC_EXPORT_INTERVAL_SECONDS"),
        description="How often metrics are pushed over OTLP, in seconds. OTEL_METRIC_EXPORT_INTERVAL (milliseconds) is honoured when this is unset.",
    )
    metric_cardinality_limit: int = Field(
        2000,
        ge=1,
        le=1_000_000,
        validation_alias=_env("TELEMETRY_METRIC_CARDINALITY_LIMIT"),
        description="Attribute sets kept per metric of the helpers (`record_counter`, `record_histogram`, `set_gauge`, `record_up_down`, `observe_gauge`), the overflow series included; beyond it new sets are recorded under `otel.metric.overflow=true`, warned once per metric and counted in `otel_trader_metric_overflow_total{metric}`. 2000 is the OpenTelemetry default.",
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
    multiprocess_dir: str | None = Field(
        None,
        validation_alias=_env("TELEMETRY_MULTIPROCESS_DIR"),
        description="Where the workers of one server (uvicorn `--workers`, gunicorn, hypercorn) share metric snapshots, so that `/metrics` serves totals over all of them. Unset: detected (Linux), under the temp directory; a path: used for every process, with a subdirectory per server when the server can be detected; `off`: each worker serves only its own metrics.",
    )
    excluded_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["/metrics", "/health"],
        validation_alias=_env("TELEMETRY_EXCLUDED_PATHS", "OTEL_PYTHON_FASTAPI_EXCLUDED_URLS"),
        description="Path prefixes neither traced nor counted in RED metrics (comma list).",
    )
    disabled_instrumentations: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("TELEMETRY_DISABLED_INSTRUMENTATIONS", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"),
        description="Integrations to leave off: any of `fastapi`, `httpx`, `sqlalchemy`, `redis`, `aiohttp` (also `aiohttp-client`), `requests`, `ccxt`, `websockets`, `logging`, or `*` for all. An unknown name in TELEMETRY_DISABLED_INSTRUMENTATIONS is an error (a typo); in OTEL_PYTHON_DISABLED_INSTRUMENTATIONS it is ignored, since that list also names contrib instrumentations (`urllib3`, …) that `opentelemetry-instrument` skips.",
    )
    propagate_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("TELEMETRY_PROPAGATE_HOSTS"),
        description="Hosts that also get W3C trace context (`traceparent`, `tracestate`, `baggage`) from aiohttp and requests calls (comma list: `api.desk.example`, `*.desk.example`, IP addresses, `*` for every host). Always: loopback, private and link-local addresses, `localhost`, single-label names, `*.local`, `*.internal`, `*.svc`, `*.cluster.local`. Exchanges and other third parties get none.",
    )
    operation_spans: bool = Field(
        False,
        validation_alias=_env("FASTAPI_OPERATION_SPANS"),
        description="FastAPI ≥ 0.142 only: also trace dependency resolution, endpoint and serialization as child spans (≈ 3 extra spans per request).",
    )
    gc_freeze: bool = Field(
        True,
        validation_alias=_env("TELEMETRY_GC_FREEZE"),
        description="When `instrument_app`'s lifespan has started the app, collect the young GC generations and `gc.freeze()` what is alive (modules, app, routes, pools), so full collections stop traversing it: they pause requests for ≈ 1–3 ms instead of tens of ms. Objects alive then that later become cyclic garbage are only freed when the lifespan ends (`gc.unfreeze()`). `false` leaves the GC alone.",
    )
    loop_monitor: bool = Field(
        True,
        validation_alias=_env("TELEMETRY_LOOP_MONITOR"),
        description="Probe the asyncio event loop 4 times a second from a watchdog thread (`asyncio_event_loop_lag_seconds`) and warn, with the trace id, when a callback blocks it. Started by `instrument_app`'s lifespan and by `trading.feed(...)`.",
    )
    loop_block_threshold_seconds: float = Field(
        0.1,
        gt=0,
        le=60,
        validation_alias=_env("TELEMETRY_LOOP_BLOCK_THRESHOLD_SECONDS"),
        description="A callback holding the event loop longer than this is logged as a warning (task, innermost frames, trace id), at most once per 10 s.",
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
    attribute_value_length_limit: int = Field(
        4096,
        ge=16,
        le=1_048_576,
        validation_alias=_env("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
        description="Longest string kept in a span, event or log attribute (characters); longer values are cut. Bounds memory and export size when a client sends a huge URL. The SDK's default is unlimited.",
    )
    bsp_schedule_delay_ms: int = Field(
        5000,
        ge=1,
        le=3600000,
        validation_alias=_env("OTEL_BSP_SCHEDULE_DELAY"),
        description="Milliseconds between span batch exports.",
    )
    bsp_max_queue_size: int = Field(
        8192,
        ge=1,
        le=1000000,
        validation_alias=_env("OTEL_BSP_MAX_QUEUE_SIZE"),
        description="Spans buffered for export; beyond it new ones are dropped and counted. The SDK's default is 2048: queued spans here are compact tuples (≈ 0.6–1.6 KB each), and at high rates the queue holds what arrives while the export thread waits for the GIL (one process at 25k spans/s dropped 2% with 2048, none with 8192).",
    )
    bsp_max_export_batch_size: int = Field(
        512,
        ge=1,
        le=1000000,
        validation_alias=_env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        description="Spans per export batch (at most the queue size; large batches are also split by size).",
    )
    bsp_export_timeout_ms: int = Field(
        30000,
        ge=1,
        le=600000,
        validation_alias=_env("OTEL_BSP_EXPORT_TIMEOUT"),
        description="Milliseconds one span export may take.",
    )
    blrp_schedule_delay_ms: int = Field(
        1000,
        ge=1,
        le=3600000,
        validation_alias=_env("OTEL_BLRP_SCHEDULE_DELAY"),
        description="Milliseconds between log record batch exports.",
    )
    blrp_max_queue_size: int = Field(
        2048,
        ge=1,
        le=1000000,
        validation_alias=_env("OTEL_BLRP_MAX_QUEUE_SIZE"),
        description="Log records buffered for export; beyond it new ones are dropped and counted.",
    )
    blrp_max_export_batch_size: int = Field(
        512,
        ge=1,
        le=1000000,
        validation_alias=_env("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"),
        description="Log records per export batch (at most the queue size; large batches are also split by size).",
    )
    blrp_export_timeout_ms: int = Field(
        30000,
        ge=1,
        le=600000,
        validation_alias=_env("OTEL_BLRP_EXPORT_TIMEOUT"),
        description="Milliseconds one log record export may take.",
    )
    attribute_count_limit: int = Field(
        128,
        ge=0,
        le=100000,
        validation_alias=_env("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"),
        description="Attributes kept per span and log record.",
    )
    span_event_count_limit: int = Field(
        128,
        ge=0,
        le=100000,
        validation_alias=_env("OTEL_SPAN_EVENT_COUNT_LIMIT"),
        description="Events kept per span.",
    )
    span_link_count_limit: int = Field(
        128,
        ge=0,
        le=100000,
        validation_alias=_env("OTEL_SPAN_LINK_COUNT_LIMIT"),
        description="Links kept per span.",
    )
    event_attribute_count_limit: int = Field(
        128,
        ge=0,
        le=100000,
        validation_alias=_env("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT"),
        description="Attributes kept per span event.",
    )
    link_attribute_count_limit: int = Field(
        128,
        ge=0,
        le=100000,
        validation_alias=_env("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT"),
        description="Attributes kept per span link.",
    )
    signoz_url: str | None = Field(
        None,
        validation_alias=_env("SIGNOZ_URL"),
        description="SigNoz UI base URL, used to link trace ids (error reports).",
    )
    otel_metric_export_interval_ms: float | None = Field(
        None,
        ge=100,
        le=3_600_000,
        validation_alias=_env("OTEL_METRIC_EXPORT_INTERVAL"),
        description="Standard variable, milliseconds; used when METRIC_EXPORT_INTERVAL_SECONDS is unset.",
        exclude=True,
    )

    _split = field_validator(
        "excluded_paths", "disabled_instrumentations", "redact_keys", "propagate_hosts", mode="before"
    )(classmethod(lambda cls, v: _split_list(v)))
    _kv = field_validator("resource_attributes", "otlp_headers", mode="before")(
        classmethod(lambda cls, v: _parse_key_values(v))
    )

    @field_validator("otlp_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str, info: ValidationInfo) -> str:
        match = _ENDPOINT_RE.match(value.strip())
        port = match and match.group("port")
        if not match or (port is not None and not 0 < int(port) < 65536):
            raise ValueError(
                "expected host:port or a URL like http://host:4317 / https://host:443 (port 1-65535)"
            )
        path = match.group("path")
        if port == "4317" and path not in (None, "/") and info.data.get("otlp_protocol") is None:
            # A URL path means OTLP/HTTP, port 4317 means OTLP/gRPC: either guess loses every export.
            raise ValueError(
                "a URL path means OTLP/HTTP but port 4317 is OTLP/gRPC: use port 4318 for HTTP, "
                "drop the path for gRPC, or set OTLP_PROTOCOL"
            )
        return value.strip()

    @field_validator("traces_sampler")
    @classmethod
    def _check_sampler(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in _SAMPLERS + _UNSUPPORTED_SAMPLERS:
            raise ValueError("expected one of " + ", ".join(_SAMPLERS))
        return value

    @field_validator("sdk_disabled", mode="before")
    @classmethod
    def _spec_bool(cls, value: Any) -> Any:
        # The specification: only a true value disables; anything else is false, with a warning.
        if not isinstance(value, str):
            return value
        word = value.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word not in _FALSE_WORDS and ("OTEL_SDK_DISABLED", value) not in _warned_ignored:
            _warned_ignored.add(("OTEL_SDK_DISABLED", value))
            import logging

            logging.getLogger("otel_trader").warning(
                "otel-trader: OTEL_SDK_DISABLED=%r is not true or false; read as false", value
            )
        return False

    @field_validator("otlp_headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        checked: dict[str, str] = {}
        for name, header_value in value.items():
            key = name.strip().lower()
            if not _HEADER_NAME_RE.match(key):
                raise ValueError(f"header name {name!r} may only hold letters, digits and '-', '_', '.'")
            if not _HEADER_VALUE_RE.match(header_value):
                raise ValueError(
                    f"the value of header {key!r} holds a line break, a control or a non-ASCII "
                    "character (percent-encode it, e.g. %20 for a space)"
                )
            checked[key] = header_value
        return checked

    @field_validator("multiprocess_dir")
    @classmethod
    def _check_multiprocess_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = value.strip()
        if path.lower() in ("off", "none", "false"):
            return "off"
        # Absolute: every worker must name the same directory, whatever its working directory.
        if not os.path.isabs(path) or any(ord(c) < 32 or ord(c) == 127 for c in path):
            raise ValueError("expected an absolute directory path, or off")
        return path

    @field_validator("otlp_certificate")
    @classmethod
    def _check_certificate(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = value.strip()
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise ValueError("expected a readable PEM file; no such file or not readable")
        return path

    def switched_on(self) -> bool:
        """Whether telemetry is on (TELEMETRY_ENABLED and not OTEL_SDK_DISABLED)."""
        return self.active

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("propagate_hosts")
    @classmethod
    def _check_propagate_hosts(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.match(r"^(\*|(\*\.)?[A-Za-z0-9_.-]+|\[?[0-9A-Fa-f:.]+\]?)$", v)]
        if bad:
            raise ValueError(f"expected host names, *.suffix patterns, IP addresses or *; not {bad}")
        return [v.lower() for v in value]

    @field_validator("disabled_instrumentations")
    @classmethod
    def _check_instrumentations(cls, value: list[str]) -> list[str]:
        known = {"fastapi", "httpx", "sqlalchemy", "redis", "logging", "*"}
        known |= {"aiohttp", "requests", "ccxt", "websockets"}
        # The contrib entry point's name means the same integration.
        names = ["aiohttp" if v.lower() == "aiohttp-client" else v.lower() for v in value]
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
        if (
            "metric_export_interval_seconds" not in self.model_fields_set
            and self.otel_metric_export_interval_ms
        ):
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
        if protocol == "http/json":  # no JSON exporter in OpenTelemetry Python; the port serves both
            protocol = "http/protobuf"
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


def env_names(field: str, model: type[BaseSettings] | None = None) -> list[str]:
    alias = (model or TelemetryConfig).model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [field.upper()]


def _field_of(loc: str, model: type[BaseSettings] | None = None) -> str:
    # pydantic reports an aliased field under its first alias, not the field name.
    for name in (model or TelemetryConfig).model_fields:
        if loc == name or loc in env_names(name, model):
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
        names = env_names(field, model) if field in model.model_fields else [field]
        if field in kwargs:
            source = f"argument {field}"
        else:
            present = {k.upper() for k in os.environ}
            source = next((n for n in names if n.upper() in present), names[0])
        accepted = _ACCEPTED.get(err["type"]) or err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        # A secret (a bot token, a header value, a password in a URL) must not end up in a
        # traceback or a log line.
        if _is_secret(model, field) and value is not None:
            shown = "'<hidden>'"
        else:
            from otel_trader.redaction import redact_url

            shown = repr(redact_url(value) if isinstance(value, str) else value)
        lines.append(f"{source}={shown} is not valid: {accepted}")
    return ConfigError("; ".join(lines))


def _failed_fields(exc: ValidationError, model: type[BaseSettings]) -> set[str]:
    """The fields a validation error is about (``""`` for a check across fields)."""
    return {_field_of(str(err["loc"][0]) if err["loc"] else "", model) for err in exc.errors()}


def _default_of(model: type[BaseSettings], name: str) -> Any:
    info = model.model_fields[name]
    return info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]


_warned_ignored: set[tuple[str, str]] = set()


def _warn_ignored(model: type[BaseSettings], switch: str, problems: str) -> None:
    """Warn once per process about invalid settings of a feature that is switched off."""
    key = (model.__name__, problems)
    if key in _warned_ignored:
        return
    _warned_ignored.add(key)
    import logging

    switch_var = env_names(switch, model)[0]
    logging.getLogger("otel_trader").warning(
        "otel-trader: %s is off, so these invalid settings are ignored (defaults used); "
        "they would stop the application with %s=true: %s",
        switch_var.removesuffix("_ENABLED").lower().replace("_", " ") or model.__name__,
        switch_var,
        problems,
    )


def _is_secret(model: type[BaseSettings], field: str) -> bool:
    info = model.model_fields.get(field)
    if info is None:
        return False
    extra = info.json_schema_extra
    return "SecretStr" in str(info.annotation) or (isinstance(extra, dict) and bool(extra.get("secret")))
