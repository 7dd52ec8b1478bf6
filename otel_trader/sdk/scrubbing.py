"""Secrets are scrubbed from spans and log records on the export thread, before any exporter.

:class:`ScrubbingSpanExporter` and :class:`ScrubbingLogExporter` wrap every exporter the
manager installs (OTLP, console, and the ones passed to ``configure(span_exporter=...,
log_exporter=...)``). The request path pays nothing: the work runs in the batch processors'
worker thread, once per exported item.

What is scrubbed (rules in :mod:`otel_trader.redaction`): span names, attributes (a sensitive
key's value becomes ``REDACTED``, any other string value has secrets inside it replaced), event
names and attributes (``exception.message``, ``exception.stacktrace``), link attributes, the
status description and resource attributes; log bodies and attributes. A log body longer than
the attribute value length limit (``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``, default 4096) is cut
and ends with a marker saying how much was cut.

Fast path: an item with nothing to change is passed on as the same object; only items that
carry a secret are copied (the originals are never modified, other processors may hold them).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, Status

from otel_trader.redaction import REDACTED, redact_attribute, redact_text
from otel_trader.sdk import gil

__all__ = [
    "DEFAULT_BODY_LIMIT",
    "ScrubbingLogExporter",
    "ScrubbingSpanExporter",
    "body_limit",
    "scrub_attributes",
    "scrub_log",
    "scrub_span",
]

logger = logging.getLogger("otel_trader")

DEFAULT_BODY_LIMIT = 4096


def body_limit() -> int:
    """Longest log body exported, in characters: ``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`` or 4096."""
    try:
        limit = int(os.environ.get("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", DEFAULT_BODY_LIMIT))
    except ValueError:
        return DEFAULT_BODY_LIMIT
    return limit if limit > 0 else DEFAULT_BODY_LIMIT


def scrub_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Scrubbed copy of ``attributes``, or ``None`` when nothing in them has to change."""
    if not attributes:
        return None
    # The SDK's BoundedAttributes keeps a plain dict: iterating it directly is several times
    # cheaper than going through the Mapping interface, and this runs for every exported item.
    items = getattr(attributes, "_dict", attributes)
    changed: dict[str, Any] | None = None
    for key, value in items.items():
        cleaned = redact_attribute(key, value)
        if cleaned is not value:
            if changed is None:
                changed = {}
            changed[key] = cleaned
    if changed is None:
        return None
    return {key: changed.get(key, value) for key, value in attributes.items()}


def _bounded(cleaned: dict[str, Any], original: Any) -> Any:
    """``cleaned`` for a span, event, link or log record, keeping the original's dropped count.

    A plain dict when nothing was dropped (the SDK's readers take any mapping); building
    BoundedAttributes re-validates every value, which costs more than the scrubbing itself.
    """
    dropped = getattr(original, "dropped", 0)
    if not dropped:
        return cleaned
    bounded = BoundedAttributes(maxlen=None, attributes=cleaned, immutable=True)
    bounded.dropped = dropped
    return bounded


def _bounded_list(items: Sequence[Any], original: Any) -> Any:
    bounded: Any = BoundedList(None)
    bounded.extend(items)
    bounded.dropped = getattr(original, "dropped", 0)
    return bounded


class _ResourceCache:
    """The scrubbed form of the last resource seen (spans of one provider share one object)."""

    __slots__ = ("source", "result")

    def __init__(self) -> None:
        self.source: Any = None
        self.result: Any = None

    def get(self, resource: Any) -> Any:
        if resource is self.source:
            return self.result
        result = resource
        attributes = getattr(resource, "attributes", None)
        cleaned = scrub_attributes(attributes) if attributes is not None else None
        if cleaned is not None:
            result = Resource(cleaned, getattr(resource, "schema_url", None))
        self.source, self.result = resource, result
        return result


def scrub_span(span: Any, resources: _ResourceCache | None = None) -> Any:
    """``span`` itself when it carries no secret, else a scrubbed ``ReadableSpan`` copy."""
    name = span.name
    clean_name = redact_text(name) if isinstance(name, str) else name
    # The private fields when present (SDK spans): the public properties copy on every access.
    original_attributes = getattr(span, "_attributes", None)
    attributes = scrub_attributes(original_attributes if original_attributes is not None else span.attributes)

    events = getattr(span, "_events", None)
    events = span.events if events is None else events
    clean_events: list[Any] | None = None
    for i, event in enumerate(events or ()):
        event_attributes = scrub_attributes(event.attributes)
        event_name = redact_text(event.name)
        if event_attributes is None and event_name == event.name:
            continue
        if clean_events is None:
            clean_events = list(events)
        clean_events[i] = Event(
            event_name,
            _bounded(event_attributes, event.attributes)
            if event_attributes is not None
            else event.attributes,
            event.timestamp,
        )

    links = getattr(span, "_links", None)
    links = span.links if links is None else links
    clean_links: list[Any] | None = None
    for i, link in enumerate(links or ()):
        link_attributes = scrub_attributes(link.attributes)
        if link_attributes is None:
            continue
        if clean_links is None:
            clean_links = list(links)
        clean_links[i] = Link(link.context, _bounded(link_attributes, link.attributes))

    status = span.status
    description = status.description
    clean_status = status
    if description:
        cleaned = redact_text(description)
        if cleaned != description:
            clean_status = Status(status.status_code, cleaned)

    resource = span.resource
    clean_resource = resources.get(resource) if resources is not None else _ResourceCache().get(resource)

    if (
        clean_name == name
        and attributes is None
        and clean_events is None
        and clean_links is None
        and clean_status is status
        and clean_resource is resource
    ):
        return span
    return ReadableSpan(
        name=clean_name,
        context=span.context,
        parent=span.parent,
        resource=clean_resource,
        attributes=_bounded(attributes, original_attributes)
        if attributes is not None
        else original_attributes,
        events=_bounded_list(clean_events, getattr(span, "_events", None))
        if clean_events is not None
        else events,
        links=_bounded_list(clean_links, getattr(span, "_links", None)) if clean_links is not None else links,
        kind=span.kind,
        # The private field: the public property is deprecated and warns on every access.
        instrumentation_info=getattr(span, "_instrumentation_info", None),
        status=clean_status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _truncate(body: str, limit: int) -> str:
    if len(body) <= limit:
        return body
    marker = f"… [{len(body) - limit} characters cut]"
    return body[: max(0, limit - len(marker))] + marker


def scrub_log(record: Any, limit: int | None = None, resources: _ResourceCache | None = None) -> Any:
    """``record`` (a ``ReadableLogRecord``) itself when clean, else a scrubbed copy; long bodies are cut."""
    limit = body_limit() if limit is None else limit
    api_record = record.log_record
    body = api_record.body
    clean_body = body
    if isinstance(body, str):
        clean_body = _truncate(redact_text(body), limit)
        if clean_body == body:
            clean_body = body
    elif isinstance(body, Mapping):
        cleaned = scrub_attributes(body)
        if cleaned is not None:
            clean_body = cleaned
    attributes = scrub_attributes(api_record.attributes)
    resource = record.resource
    clean_resource = resources.get(resource) if resources is not None else _ResourceCache().get(resource)
    if clean_body is body and attributes is None and clean_resource is resource:
        return record
    new_record = copy.copy(api_record)
    new_record.body = clean_body
    if attributes is not None:
        new_record.attributes = _bounded(attributes, api_record.attributes)
    return dataclasses.replace(record, log_record=new_record, resource=clean_resource)


class _Wrapper:
    """Delegates everything but ``export`` to the wrapped exporter."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._resources = _ResourceCache()

    def shutdown(self, *args: Any, **kwargs: Any) -> Any:
        """Shut the wrapped exporter down."""
        return self.inner.shutdown(*args, **kwargs)

    def force_flush(self, timeout_millis: int = 30_000) -> Any:
        """Flush the wrapped exporter (exporters without ``force_flush`` have nothing buffered)."""
        flush = getattr(self.inner, "force_flush", None)
        return flush(timeout_millis) if flush else True

    def __getattr__(self, name: str) -> Any:
        if name == "inner":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


class ScrubbingSpanExporter(_Wrapper, SpanExporter):
    """A span exporter that passes spans to ``inner`` with secrets removed."""

    def export(self, spans: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        """Export ``spans`` through the wrapped exporter, scrubbed (span exporter protocol)."""
        return self.inner.export(self._scrub(spans), *args, **kwargs)

    def export_packed(self, items: Sequence[Any], packer: Any, scrub: Any = None) -> Any:
        """Export packed spans (``span_queue.export_packed``), scrubbed by the exporter underneath."""
        from otel_trader.sdk.span_queue import export_packed

        return export_packed(self.inner, items, packer, self._resources)

    def span_encoder(self, scrub: bool = False) -> Any:
        """The exporter underneath's span encoder, scrubbing (``span_queue.span_encoder``)."""
        from otel_trader.sdk.span_queue import span_encoder

        return span_encoder(self.inner, True)

    def _scrub(self, spans: Sequence[Any]) -> Sequence[Any]:
        resources = self._resources
        try:
            scrubbed = []
            step = gil.pacer().step
            for span in spans:
                scrubbed.append(scrub_span(span, resources))
                step()  # the export thread does not hold the GIL for a whole batch
            return scrubbed
        except Exception:
            # A span the scrubber cannot read must not reach the exporter unscrubbed.
            logger.debug("otel-trader: span scrubbing failed; batch replaced", exc_info=True)
            return [_failsafe_span(span) for span in spans]


class ScrubbingLogExporter(_Wrapper, LogRecordExporter):
    """A log record exporter that passes records to ``inner`` with secrets removed and bodies capped."""

    def __init__(self, inner: Any, body_limit_chars: int | None = None) -> None:
        super().__init__(inner)
        self.body_limit = body_limit() if body_limit_chars is None else body_limit_chars

    def export(self, batch: Sequence[Any], *args: Any, **kwargs: Any) -> Any:
        """Export ``batch`` through the wrapped exporter, scrubbed (log exporter protocol)."""
        resources, limit = self._resources, self.body_limit
        scrubbed: list[Any] = []
        for record in batch:
            try:
                scrubbed.append(scrub_log(record, limit, resources))
            except Exception:
                logger.debug("otel-trader: log scrubbing failed; record dropped", exc_info=True)
        return self.inner.export(scrubbed, *args, **kwargs)


def _failsafe_span(span: Any) -> Any:
    """The span with only its identity kept: every attribute value and text replaced."""
    return ReadableSpan(
        name=REDACTED,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        kind=span.kind,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
