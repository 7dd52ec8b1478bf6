"""The SDK's sampler, span limits and batch-processor options, built from :class:`TelemetryConfig`."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from otel_trader.settings import TelemetryConfig

__all__ = ["batch_options", "build_sampler", "build_span_limits", "sdk_self_metrics"]

logger = logging.getLogger("otel_trader")


def batch_options(config: TelemetryConfig, signal: str) -> dict[str, int]:
    """Keyword arguments of the SDK's batch processor for ``signal`` (``bsp`` spans, ``blrp`` logs).

    Passed explicitly, validated by the settings table: the SDK would read the same variables
    itself, and crash ``configure()`` on a negative or huge value. The batch is capped at the
    queue size, which the SDK otherwise rejects.
    """
    queue = getattr(config, f"{signal}_max_queue_size")
    return {
        "schedule_delay_millis": getattr(config, f"{signal}_schedule_delay_ms"),
        "max_queue_size": queue,
        "max_export_batch_size": min(queue, getattr(config, f"{signal}_max_export_batch_size")),
        "export_timeout_millis": getattr(config, f"{signal}_export_timeout_ms"),
    }


def build_span_limits(config: TelemetryConfig) -> Any:
    """The SDK's span limits from the environment, with string attributes capped by default.

    The SDK keeps attribute values of any length unless told otherwise: one client sending a
    100 KB URL then makes every span of that request (and its export batch) 100 KB.
    """
    from opentelemetry.sdk.trace import SpanLimits

    limit = config.attribute_value_length_limit
    return SpanLimits(
        max_attributes=config.attribute_count_limit,
        max_span_attributes=config.attribute_count_limit,
        max_events=config.span_event_count_limit,
        max_links=config.span_link_count_limit,
        max_event_attributes=config.event_attribute_count_limit,
        max_link_attributes=config.link_attribute_count_limit,
        max_attribute_length=limit,
        max_span_attribute_length=limit,
    )


def build_sampler(config: TelemetryConfig) -> Any:
    """Parent-based ratio sampling by default; OTEL_TRACES_SAMPLER picks another."""
    from opentelemetry.sdk.trace import sampling

    ratio = sampling.TraceIdRatioBased(config.sample_ratio)
    name = config.traces_sampler
    if name not in _SUPPORTED_SAMPLERS:
        logger.warning(
            "otel-trader: OTEL_TRACES_SAMPLER=%s is not available in OpenTelemetry Python; "
            "using parentbased_traceidratio (TRACE_SAMPLE_RATIO=%g) instead",
            name,
            config.sample_ratio,
        )
        name = "parentbased_traceidratio"
    return {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": ratio,
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(ratio),
    }[name]


_SUPPORTED_SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)


@contextlib.contextmanager
def sdk_self_metrics() -> Iterator[None]:
    """Switch the SDK's self-metrics on for the processors built inside this block only.

    They count what a full queue drops (``otel_sdk_processor_span_processed_total{error_type=
    "queue_full"}``) at a cost per batch. The same switch on the TracerProvider would add three
    metric updates to every span, so it is not set process-wide. The SDK reads the switch only
    from the environment, when a processor is built: hence a variable set for this block.
    """
    name = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"
    previous = os.environ.get(name)
    os.environ[name] = "true" if previous is None else previous
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
