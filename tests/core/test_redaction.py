"""Secret scrubbing: key matching, URLs, query strings, free text, spans, log records, log handlers."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, Status, StatusCode

import otel_trader
from otel_trader import redaction
from otel_trader.redaction import (
    RedactingFilter,
    add_redact_keys,
    is_sensitive_key,
    redact_query,
    redact_text,
    redact_url,
)
from otel_trader.sdk.scrubbing import ScrubbingLogExporter, ScrubbingSpanExporter, scrub_span

BOT_TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


@pytest.fixture(autouse=True)
def _restore_user_keys() -> Iterator[None]:
    """Keys added by a test are process-wide: put the previous set back afterwards."""
    saved = redaction._user_phrases, redaction._stems
    yield
    redaction._user_phrases, redaction._stems = saved
    redaction._key_cache.clear()
    redaction._redact_short.cache_clear()


# -- keys ----------------------------------------------------------------------------------------

SENSITIVE_KEYS = [
    "api_key",
    "apiKey",
    "APIKey",
    "accessToken",
    "apiSecret",
    "key",
    "api_key[]",
    "api_key%5B%5D",
    "password",
    "passwd",
    "signature",
    "token",
    "csrftoken",
    "Authorization",
    "Proxy-Authorization",
    "Cookie",
    "Set-Cookie",
    "http.request.header.authorization",
    "http.request.header.x-mbx-apikey",
    "http.response.header.set-cookie",
    "exchange.api_key",
    "telegram.bot_token",
    "X-MBX-APIKEY",  # Binance
    "X-BAPI-API-KEY",  # Bybit
    "X-BAPI-SIGN",
    "API-Key",  # Kraken
    "API-Sign",
    "CB-ACCESS-KEY",  # Coinbase
    "CB-ACCESS-SIGN",
    "CB-ACCESS-PASSPHRASE",
    "OK-ACCESS-KEY",  # OKX
    "OK-ACCESS-SIGN",
    "OK-ACCESS-PASSPHRASE",
    "KC-API-PASSPHRASE",  # KuCoin
    "AccessKeyId",  # Huobi's query key
    "X-Telegram-Bot-Api-Secret-Token",
    "client_secret",
    "private_key",
    "secret_key",
    "x-amz-security-token",
    "seed_phrase",
]

#: Keys that only look like credentials: matching whole words keeps them readable.
INNOCENT_KEYS = [
    "cache_key",  # a Redis key name
    "sort_key",
    "public_key",
    "token_count",  # how many LLM tokens, not a token
    "max_tokens",
    "design",
    "signal",
    "signature_version",
    "X-BAPI-SIGN-TYPE",
    "OK-ACCESS-TIMESTAMP",  # signed, but not itself a secret
    "monkey",
    "symbol",
    "url.path",
    "trace_id",
    "http.request.method",
]


def test_keys_match_by_words_across_spellings_and_innocent_keys_stay() -> None:
    assert [k for k in SENSITIVE_KEYS if not is_sensitive_key(k)] == []
    assert [k for k in INNOCENT_KEYS if is_sensitive_key(k)] == []
    harmless = "design=1 signal=2 cache_key=orders:1 token_count=5 at 12:30:45 https://example.com/a"
    assert redact_text(harmless) == harmless


def test_every_sensitive_key_is_redacted_in_text_pairs_too() -> None:
    for key in SENSITIVE_KEYS:
        assert redact_text(f"a=1 {key}=SECRETVAL b=2") == f"a=1 {key}=REDACTED b=2", key
        assert redact_text(f'{{"{key}": "SECRET VAL"}}') == f'{{"{key}": "REDACTED"}}', key


def test_users_can_add_keys() -> None:
    assert redact_query("desk_pin=1234") == "desk_pin=1234"
    add_redact_keys(["desk-pin"])
    assert redact_query("desk_pin=1234") == "desk_pin=REDACTED"
    assert redact_text("desk_pin=1234") == "desk_pin=REDACTED"
    # Matched by words like the built-in names.
    assert is_sensitive_key("deskPin") and is_sensitive_key("trader.desk_pin")
    assert redact_text("trader.deskPin: 99") == "trader.deskPin: REDACTED"
    assert not is_sensitive_key("desk")


def test_bad_key_names_are_data_and_never_break_later_calls() -> None:
    add_redact_keys(["api(key", "a[b", "*+?", ""])  # regex syntax is just characters
    assert redact_text("api_key=abc q=1") == "api_key=REDACTED q=1"
    with pytest.raises(TypeError):
        add_redact_keys(["fine_name", 3])  # type: ignore[list-item]
    assert not is_sensitive_key("fine_name")  # nothing of the rejected call was applied
    add_redact_keys("trade_pin")  # one string is one name, not its characters
    assert is_sensitive_key("trade_pin") and not is_sensitive_key("t")
    assert redact_text("trade_pin=77 side=buy") == "trade_pin=REDACTED side=buy"


def test_telemetry_redact_keys_setting_is_applied_at_configuration(reset_otel: None, monkeypatch) -> None:
    monkeypatch.setenv("TELEMETRY_REDACT_KEYS", "desk_code, trader-pin")
    assert not is_sensitive_key("desk_code")
    otel_trader.configure(enabled=True, exporter="none", span_exporter=InMemorySpanExporter())
    assert is_sensitive_key("desk_code") and is_sensitive_key("traderPin")
    assert redact_query("desk_code=9&qty=1") == "desk_code=REDACTED&qty=1"


# -- text and URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer REDACTED"),
        ("authorization=Basic dXNlcjpwYXNz", "authorization=Basic REDACTED"),
        ("GET /x?api_key=123&q=1", "GET /x?api_key=REDACTED&q=1"),
        ("placing order with passphrase: hunter2 now", "placing order with passphrase: REDACTED now"),
        ('{"secret": "s3cr3t", "symbol": "BTC"}', '{"secret": "REDACTED", "symbol": "BTC"}'),
        (
            "POST https://api.telegram.org/bot123456:ABC-def_9/sendMessage",
            "POST https://api.telegram.org/botREDACTED/sendMessage",
        ),
        ("nothing to hide here", "nothing to hide here"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


#: (text, the secret in it). Every secret must be gone and REDACTED be in its place.
PLANTED = [
    ("GET https://ex.com/v5/order?symbol=BTC&api_key=PL1key", "PL1key"),
    ("accessToken=PL2tok&qty=1", "PL2tok"),
    ("apiSecret: PL3sec", "PL3sec"),
    ("key=PL4AIzaSy", "PL4AIzaSy"),
    ("api_key[]=PL5arr", "PL5arr"),
    ("api_key%5B%5D=PL6enc", "PL6enc"),
    ("X-BAPI-API-KEY: PL7bybit", "PL7bybit"),
    ("X-BAPI-SIGN=PL8bsign", "PL8bsign"),
    ("API-Sign: PL9kraken==", "PL9kraken"),
    ("CB-ACCESS-KEY: PL10cbk", "PL10cbk"),
    ("CB-ACCESS-SIGN: PL11cbs", "PL11cbs"),
    ("CB-ACCESS-PASSPHRASE: PL12cbp", "PL12cbp"),
    ("X-MBX-APIKEY=PL13mbx", "PL13mbx"),
    ("OK-ACCESS-KEY: PL14okk OK-ACCESS-SIGN: PL14oks", "PL14ok"),
    ("OK-ACCESS-PASSPHRASE=PL15okp", "PL15okp"),
    ("http.request.header.authorization=PL16hdr", "PL16hdr"),
    ("{'Authorization': 'Bearer PL17.bearer', 'OK-ACCESS-SIGN': 'PL17sign'}", "PL17"),
    ("connect failed: postgresql://trader:PL18pgpw@db:5432/trades", "PL18pgpw"),
    ("redis error redis://:PL19rdpw@cache:6379/0", "PL19rdpw"),
    ("mongodb+srv://u:PL20p@ss@cluster0.example.net/db", "PL20p"),
    (f"Telegram refused {BOT_TOKEN} (401)", BOT_TOKEN.split(":")[1]),
    (f"url=https://api.telegram.org/bot{BOT_TOKEN}/getMe", BOT_TOKEN.split(":")[1]),
    (f"GET /bot{BOT_TOKEN.replace(':', '%3A')}/getMe HTTP/1.1", BOT_TOKEN.split(":")[1]),  # quoted path
    ("POST /webhook/PL21whk0a9b8c7d6 HTTP/1.1", "PL21whk0a9b8c7d6"),
    ("/webhook/telegram/PL22whkSecretPart", "PL22whkSecretPart"),
    ('HTTP Request: GET http://trader:PL23pw@127.0.0.1:8080/t?api_key=PL23k "HTTP/1.1 200 OK"', "PL23"),
    ("ALTER USER trader WITH PASSWORD 'PL24sql'", "PL24sql"),
    ("password=PL25a=b== and more", "PL25a"),
    ("Authorization: Basic UEwyNmJhc2lj", "UEwyNmJhc2lj"),
    ("GET /x?callback=https://u:PL27cb@h/ok", "PL27cb"),
    ("Cookie: theme=dark; sessionid=PL28sess", "PL28sess"),
]


def test_planted_secrets_of_every_kind_are_redacted_in_text() -> None:
    survived = {text: redact_text(text) for text, secret in PLANTED if secret in redact_text(text)}
    unmarked = [text for text, _ in PLANTED if "REDACTED" not in redact_text(text)]
    assert survived == {} and unmarked == []


def test_redact_url_and_query() -> None:
    assert redact_url("https://u:p@ex.com/v5/order?symbol=BTC&signature=abc&X-MBX-APIKEY=k") == (
        "https://REDACTED:REDACTED@ex.com/v5/order?symbol=BTC&signature=REDACTED&X-MBX-APIKEY=REDACTED"
    )
    assert redact_query("limit=5&offset=10") == "limit=5&offset=10"
    # Pairs without secrets keep their exact encoding.
    assert (
        redact_query("q=a%20b+c&api_key[]=x&note=%E2%9C%93") == "q=a%20b+c&api_key[]=REDACTED&note=%E2%9C%93"
    )
    assert redact_url(f"https://api.telegram.org/bot{BOT_TOKEN}/sendMessage?chat_id=1") == (
        "https://api.telegram.org/botREDACTED/sendMessage?chat_id=1"
    )
    assert (
        redact_url("https://app/cb#access_token=tok1&state=2")
        == "https://app/cb#access_token=REDACTED&state=2"
    )


# -- spans ---------------------------------------------------------------------------------------


def _tracing() -> tuple[TracerProvider, InMemorySpanExporter]:
    provider = TracerProvider(resource=Resource({"service.name": "t", "deploy.api_key": "RESKEY1"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory)))  # type: ignore[arg-type]
    return provider, memory


def test_span_exporter_scrubs_names_attributes_events_links_status_and_resource() -> None:
    provider, memory = _tracing()
    tracer = provider.get_tracer("t")
    other = tracer.start_span("other")
    other.end()
    with tracer.start_as_current_span(
        f"GET /bot{BOT_TOKEN}/sendMessage",
        attributes={"api_key": "SPK1", "url.path": "/webhook/SPK2webhooksecret", "qty": 3, "password": 1234},
        links=[Link(other.get_span_context(), {"session_token": "SPK3"})],
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        span.set_attribute("http.request.header.authorization", ("Bearer SPK4.x",))
        span.add_event("retry", {"url.full": "http://u:SPK5@h/x?signature=SPK6"})
        try:
            raise ConnectionError("postgresql://trader:SPK7@db/trades unreachable")
        except ConnectionError as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"ConnectionError: {exc} via {BOT_TOKEN}"))
    exported = memory.get_finished_spans()[-1]
    dump = exported.to_json()
    for secret in (
        "SPK1",
        "SPK2",
        "SPK3",
        "SPK4",
        "SPK5",
        "SPK6",
        "SPK7",
        "RESKEY1",
        BOT_TOKEN.split(":")[1],
        "1234",
    ):
        assert secret not in dump, secret
    assert exported.name == "GET /botREDACTED/sendMessage"
    assert exported.attributes["api_key"] == "REDACTED" and exported.attributes["qty"] == 3
    assert exported.attributes["url.path"] == "/webhook/REDACTED"
    (event_retry, event_exc) = exported.events
    assert event_exc.attributes["exception.type"] == "ConnectionError"
    assert "postgresql://REDACTED:REDACTED@db/trades" in event_exc.attributes["exception.stacktrace"]
    assert exported.status.status_code is StatusCode.ERROR
    assert exported.resource.attributes["service.name"] == "t"
    # Identity is kept: same trace, span and parent.
    assert exported.context == span.get_span_context()


def test_span_without_secrets_passes_through_as_the_same_object() -> None:
    provider = TracerProvider()
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with provider.get_tracer("t").start_as_current_span("GET /orders/{symbol}", attributes={"symbol": "BTC"}):
        pass
    (span,) = memory.get_finished_spans()
    assert scrub_span(span) is span


def test_dropped_counts_survive_scrubbing() -> None:
    from opentelemetry.sdk.trace import SpanLimits

    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=2))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(ScrubbingSpanExporter(memory)))  # type: ignore[arg-type]
    with provider.get_tracer("t").start_as_current_span("s") as span:
        for key in ("a", "b", "c", "token"):
            span.set_attribute(key, "v")
    (exported,) = memory.get_finished_spans()
    assert dict(exported.attributes) == {"c": "v", "token": "REDACTED"}
    assert exported.dropped_attributes == 2


# -- log records ---------------------------------------------------------------------------------


def _logging(limit: int = 4096):
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor

    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(ScrubbingLogExporter(memory, limit)))  # type: ignore[arg-type]
    log = logging.getLogger(f"scrub.test.{id(memory)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(LoggingHandler(logger_provider=provider))
    return log, memory


def test_log_exporter_scrubs_body_extra_keys_and_exception() -> None:
    log, memory = _logging()
    log.info(
        "signed order api_key=%s",
        "LGK1",
        extra={"apiSecret": "LGK2", "symbol": "BTC", "order": {"token": "LGK6"}},
    )
    try:
        raise ConnectionError("redis://:LGK3@cache:6379/0 refused")
    except ConnectionError:
        log.exception("cache down, retrying with %s", f"postgresql://u:LGK4@db/x and {BOT_TOKEN}")
    first, second = (r.log_record for r in memory.get_finished_logs())
    assert first.body == "signed order api_key=REDACTED"
    assert first.attributes["apiSecret"] == "REDACTED" and first.attributes["symbol"] == "BTC"
    assert first.attributes["order"] == {"token": "REDACTED"}
    dump = "".join(r.to_json() for r in memory.get_finished_logs())
    for secret in ("LGK1", "LGK2", "LGK3", "LGK4", "LGK6", BOT_TOKEN.split(":")[1]):
        assert secret not in dump, secret
    assert "redis://REDACTED:REDACTED@cache" in second.attributes["exception.message"]


def test_log_bodies_longer_than_the_limit_are_cut_with_a_marker() -> None:
    log, memory = _logging(limit=100)
    log.info("x" * 150 + " token=LGK5")
    log.info("short")
    long_body, short_body = (r.log_record.body for r in memory.get_finished_logs())
    assert len(long_body) == 100 and long_body.endswith("characters cut]") and "LGK5" not in long_body
    assert short_body == "short"


# -- the process's own log handlers --------------------------------------------------------------


def test_redacting_filter_keeps_args_for_formatters_that_read_them() -> None:
    # uvicorn's access formatter unpacks record.args itself.
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/bot{BOT_TOKEN}/sendMessage?api_key=FLT1", "1.1", 200),
        None,
    )
    assert RedactingFilter().filter(record)
    assert isinstance(record.args, tuple) and len(record.args) == 5 and record.args[4] == 200
    assert record.getMessage() == '127.0.0.1:5 - "GET /botREDACTED/sendMessage?api_key=REDACTED HTTP/1.1" 200'


def test_redacting_filter_rewrites_messages_and_tracebacks_for_every_later_handler() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("scrub.console")
    log.propagate = False
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"bot {BOT_TOKEN} rejected")
        except RuntimeError:
            log.exception("order with api_key=%s failed", "FLT2")
        log.error("where: %s", f"https://u:FLT3@h/{BOT_TOKEN}", stack_info=True)
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "FLT2" not in out and "FLT3" not in out and BOT_TOKEN.split(":")[1] not in out, out
    assert "api_key=REDACTED" in out and "RuntimeError: bot REDACTED rejected" in out
    assert "Stack (most recent call last)" in out


def test_handlers_set_up_after_configuration_are_covered_once_the_app_is_instrumented(
    reset_otel: None,
) -> None:
    # Zero-code start: configuration runs first, then uvicorn sets up its handlers, then the app.
    otel_trader.configure(enabled=True, exporter="none", span_exporter=InMemorySpanExporter())
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("scrub.late.server")
    log.propagate = False
    log.addHandler(handler)
    try:
        otel_trader.instrument_app(FastAPI())
        log.error("webhook call with token=%s", "LATE1")
    finally:
        log.removeHandler(handler)
    assert stream.getvalue() == "webhook call with token=REDACTED\n"
