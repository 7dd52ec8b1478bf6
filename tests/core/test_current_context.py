"""otel_trader's direct context switches are the API's attach, detach and set_span_in_context."""

from __future__ import annotations

import contextvars
import logging

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context

from otel_trader.sdk import current_context


def test_the_api_s_runtime_context_and_span_key_are_recognised():
    # The defaults of this opentelemetry-api: a change there would silently cost the fast path.
    assert current_context.SPAN_KEY_KNOWN
    assert current_context._VAR is not None


def test_attach_and_detach_switch_what_the_api_reads_as_current():
    span = trace.NonRecordingSpan(trace.SpanContext(1, 2, False))
    before = otel_context.get_current()
    ctx = current_context.with_span(span, Context({"k": "v"}))
    assert ctx == trace.set_span_in_context(span, Context({"k": "v"}))
    assert type(ctx) is Context
    token = current_context.attach(ctx)
    assert trace.get_current_span() is span
    assert otel_context.get_value("k") == "v"
    current_context.detach(token)
    assert otel_context.get_current() is before


def test_a_failed_detach_is_logged_as_the_api_logs_it_and_does_not_raise(caplog):
    token = current_context.attach(Context({"k": 1}))
    other = contextvars.copy_context()
    current_context.detach(token)  # back to the start
    with caplog.at_level(logging.ERROR):
        other.run(current_context.detach, token)  # a token of another context: reset fails
    assert any(r.getMessage() == "Failed to detach context" for r in caplog.records)
