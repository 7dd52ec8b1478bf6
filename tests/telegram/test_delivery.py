"""The reporter against a real HTTP server speaking the Bot API: content, dedup, retries, failures."""

from __future__ import annotations

import logging
import re
import time

import pytest

from otel_trader import TelegramErrorReporter, trace_operation

from .conftest import run, wait_until
from .fake_telegram import BOT_USERNAME, TOKEN, FakeTelegram, utf16_len

pytestmark = pytest.mark.timeout(60)

SIGNOZ = "https://signoz.example.com"


def reporter_for(fake: FakeTelegram, chats: list[str] | None = None, **options: object) -> TelegramErrorReporter:
    options.setdefault("dedup_minutes", 5)
    options.setdefault("retry_backoff_seconds", 0.05)
    return TelegramErrorReporter(
        bot_token=TOKEN,
        chat_ids=chats or ["1001"],
        enabled=True,
        api_base_url=fake.url,
        service_name="trader-api",
        environment="prod",
        **options,  # type: ignore[arg-type]
    )


def raise_here(message: str) -> None:
    raise ValueError(message)


def caught(message: str) -> ValueError:
    try:
        raise_here(message)
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable")


def test_one_error_one_message_with_every_field(fake_telegram: FakeTelegram, telemetry) -> None:
    async def scenario() -> str:
        reporter = reporter_for(fake_telegram, signoz_url=SIGNOZ)
        await reporter.initialize()
        with trace_operation("place_order") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            result = await reporter.report_error(
                caught("order 42 rejected"), level=logging.CRITICAL, additional_context={"symbol": "BTCUSDT"}
            )
        assert result == "queued"
        await wait_until(lambda: fake_telegram.sent())
        await reporter.shutdown()
        return trace_id

    trace_id = run(scenario())
    [call] = fake_telegram.sent()
    assert call.parse_mode == "HTML"
    text = call.visible or ""
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", text)
    assert "CRITICAL" in text and "trader-api" in text and "[prod]" in text
    assert "ValueError: order 42 rejected" in text
    assert "symbol: BTCUSDT" in text
    # The innermost frame is last in the stack, with its source line.
    assert text.rstrip().endswith("raise ValueError(message)")
    assert "in raise_here" in text
    assert f'<a href="{SIGNOZ}/trace/{trace_id}">{trace_id}</a>' in (call.text or "")
    assert len(fake_telegram.attempts()) == 1


def test_burst_of_identical_errors_gives_one_message_and_one_follow_up(fake_telegram: FakeTelegram, telemetry) -> None:
    window = 1.5

    async def scenario() -> tuple[float, float, dict[str, int]]:
        reporter = reporter_for(fake_telegram, dedup_minutes=window / 60)
        await reporter.initialize()
        start = time.perf_counter()
        for i in range(10_000):
            # Different numbers, same error: the fingerprint normalises them away.
            await reporter.report_error(caught(f"order {i} failed at 0x{i:08x}"))
        burst = time.perf_counter() - start
        await wait_until(lambda: len(fake_telegram.sent()) >= 2, timeout=window * 4)
        done = time.perf_counter() - start
        await _sleep(window * 1.5)  # no third message after a quiet window
        await reporter.shutdown()
        return burst, done, reporter.stats

    burst, done, stats = run(scenario())
    print(f"\nburst: 10,000 reports queued in {burst * 1000:.1f} ms; both messages sent after {done:.2f} s")
    first, follow_up = fake_telegram.sent()
    assert "order 0 failed" in (first.visible or "")
    assert "9999 more like this" in (follow_up.visible or "")
    assert "ValueError" in (follow_up.visible or "")
    assert len(fake_telegram.sent()) == 2
    assert stats == {"sent": 1, "failed": 0, "suppressed": 9999, "dropped": 0}
    assert burst < 5.0  # generous: measured ~0.1 s; the point is no network on this path
    scraped = telemetry.scrape()
    assert re.search(r'otel_trader_error_reports_total\{[^}]*level="ERROR"[^}]*result="suppressed"[^}]*\} 9999\.0', scraped)
    assert re.search(r'otel_trader_error_reports_total\{[^}]*level="ERROR"[^}]*result="sent"[^}]*\} 1\.0', scraped)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def test_429_retry_after_is_honoured(fake_telegram: FakeTelegram) -> None:
    fake_telegram.answer("1001", 429, "Too Many Requests: retry after 1", retry_after=1)

    async def scenario() -> None:
        reporter = reporter_for(fake_telegram)
        await reporter.initialize()
        await reporter.report_error(caught("throttled"))
        await wait_until(lambda: fake_telegram.sent(), timeout=10)
        await reporter.shutdown()
        assert reporter.stats["sent"] == 1

    run(scenario())
    throttled, accepted = fake_telegram.attempts("1001")
    assert throttled.status == 429 and accepted.status == 200
    gap = accepted.at - throttled.at
    print(f"\n429 retry_after=1: resent after {gap:.3f} s")
    assert 1.0 <= gap < 3.0


def test_500_then_success_is_retried(fake_telegram: FakeTelegram) -> None:
    fake_telegram.answer("1001", 500, "Internal Server Error")
    fake_telegram.answer("1001", 502, "Bad Gateway")

    async def scenario() -> dict[str, int]:
        reporter = reporter_for(fake_telegram, max_retries=3)
        await reporter.initialize()
        await reporter.report_error(caught("flaky"))
        await wait_until(lambda: fake_telegram.sent(), timeout=10)
        await reporter.shutdown()
        return reporter.stats

    stats = run(scenario())
    assert [c.status for c in fake_telegram.attempts("1001")] == [500, 502, 200]
    assert stats["sent"] == 1 and stats["failed"] == 0


def test_5xx_retries_are_bounded(fake_telegram: FakeTelegram) -> None:
    for _ in range(10):
        fake_telegram.answer("1001", 503, "Service Unavailable")

    async def scenario() -> dict[str, int]:
        reporter = reporter_for(fake_telegram, max_retries=2)
        await reporter.initialize()
        await reporter.report_error(caught("down"))
        await wait_until(lambda: reporter.stats["failed"] == 1, timeout=10)
        await reporter.shutdown()
        return reporter.stats

    stats = run(scenario())
    assert len(fake_telegram.attempts("1001")) == 3  # first try + 2 retries
    assert stats["failed"] == 1 and stats["sent"] == 0


def test_bad_token_warns_once_and_stops(fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_trader.telegram")
    bad = "987654321:not-the-right-token"

    async def scenario() -> TelegramErrorReporter:
        reporter = TelegramErrorReporter(bad, ["1001"], enabled=True, api_base_url=fake_telegram.url)
        check = await reporter.test_connection()
        assert not check and "401" in str(check.error) and "Unauthorized" in str(check.error)
        await reporter.initialize()
        await reporter.report_error(caught("first"))
        await wait_until(lambda: reporter.stats["failed"] == 1)
        for i in range(5):
            await reporter.report_error(caught(f"later kind {'abcde'[i]}"))
        await reporter.flush(2)
        await reporter.shutdown()
        return reporter

    reporter = run(scenario())
    assert len(fake_telegram.attempts()) == 1
    assert reporter.stats == {"sent": 0, "failed": 6, "suppressed": 0, "dropped": 0}
    assert reporter.active_chats == []
    warnings = [r for r in caplog.records if "bot token" in r.getMessage()]
    assert len(warnings) == 1
    assert bad not in caplog.text and "not-the-right-token" not in caplog.text


def test_one_bad_chat_does_not_stop_the_good_ones(fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_trader.telegram")
    # 1003 is also throttled for 2 s: it must not delay 1001.
    fake_telegram.answer("1003", 429, "Too Many Requests: retry after 2", retry_after=2)

    async def scenario() -> TelegramErrorReporter:
        reporter = reporter_for(fake_telegram, chats=["1001", "-100404", "1003"])
        await reporter.initialize()
        started = time.monotonic()
        for kind in ("alpha", "beta", "gamma"):
            await reporter.report_error(caught(f"failure {kind}"))
        await wait_until(lambda: len(fake_telegram.sent("1001")) == 3, timeout=5)
        fast = time.monotonic() - started
        assert fast < 1.5, f"chat 1001 waited {fast:.2f}s for the throttled chat"
        await wait_until(lambda: len(fake_telegram.sent("1003")) == 3, timeout=10)
        await reporter.shutdown()
        return reporter

    reporter = run(scenario())
    assert len(fake_telegram.attempts("-100404")) == 1  # one try, then the chat is dropped
    assert reporter.active_chats == ["1001", "1003"]
    assert reporter.stats["sent"] == 3 and reporter.stats["failed"] == 0
    warnings = [r for r in caplog.records if "-100404" in r.getMessage()]
    assert len(warnings) == 1 and "chat not found" in warnings[0].getMessage()


def test_unreachable_server_no_crash_failures_counted_quick_shutdown(
    fake_telegram: FakeTelegram, telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.conftest import free_port

    caplog.set_level(logging.WARNING, logger="otel_trader.telegram")
    closed = f"http://127.0.0.1:{free_port()}"

    async def scenario() -> tuple[TelegramErrorReporter, float, list[str]]:
        reporter = TelegramErrorReporter(
            TOKEN, ["1001", "1002"], enabled=True, api_base_url=closed, queue_size=10,
            max_retries=1, retry_backoff_seconds=0.05, timeout_seconds=2,
        )
        await reporter.initialize()
        # Not awaiting in between: the sender gets no turn, so the 10-slot queue overflows.
        outcomes = [reporter.submit(caught(f"error kind {chr(97 + i % 26) * (1 + i // 26)}")) for i in range(40)]
        await wait_until(lambda: reporter.stats["failed"] == 10, timeout=15)
        assert reporter.running
        for i in range(5):
            reporter.submit(caught(f"late kind {'vwxyz'[i]}"))
        start = time.perf_counter()
        await reporter.shutdown()
        return reporter, time.perf_counter() - start, outcomes

    reporter, shutdown_seconds, outcomes = run(scenario())
    print(f"\nunreachable: shutdown took {shutdown_seconds * 1000:.0f} ms; stats {reporter.stats}")
    assert outcomes.count("queued") == 10 and outcomes.count("dropped") == 30
    assert reporter.stats == {"sent": 0, "failed": 15, "suppressed": 0, "dropped": 30}
    assert shutdown_seconds < 1.5
    outage = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outage) == 1, [r.getMessage() for r in caplog.records]
    scraped = telemetry.scrape()
    assert re.search(r"otel_trader_error_reports_dropped_total\{[^}]*\} 30\.0", scraped)
    assert re.search(r'otel_trader_error_reports_total\{[^}]*result="failed"[^}]*\} 15\.0', scraped)


def test_long_message_is_cut_in_the_middle_keeping_the_tail(fake_telegram: FakeTelegram) -> None:
    def recurse(n: int) -> None:
        if n == 0:
            innermost_failure()
        recurse(n - 1)

    def innermost_failure() -> None:
        raise RuntimeError("😱 " + "very long message " * 600 + "END-OF-MESSAGE")

    async def scenario() -> None:
        reporter = reporter_for(fake_telegram)
        await reporter.initialize()
        try:
            recurse(150)
        except RuntimeError as exc:
            await reporter.report_error(exc, additional_context={f"key{i}": "v" * 1000 for i in range(30)})
        await wait_until(lambda: fake_telegram.sent())
        await reporter.shutdown()

    run(scenario())
    [call] = fake_telegram.sent()
    raw, visible = call.text or "", call.visible or ""
    assert utf16_len(raw) <= 4096 and utf16_len(visible) <= 4096
    assert "characters cut" in visible
    assert "END-OF-MESSAGE" in visible  # the message's tail survives
    assert visible.rstrip().endswith('raise RuntimeError("😱 " + "very long message " * 600 + "END-OF-MESSAGE")')
    assert "in innermost_failure" in visible
    assert "trader-api" in visible  # the header survives too


def test_html_special_characters_are_escaped(fake_telegram: FakeTelegram) -> None:
    async def scenario() -> None:
        reporter = reporter_for(fake_telegram)
        await reporter.initialize()
        await reporter.report_error(
            caught('<script>alert("x")</script> & <b>bold</b> &amp; </pre>'),
            additional_context={"<tag>": "a < b && c > d"},
        )
        await wait_until(lambda: fake_telegram.attempts())
        await reporter.shutdown()

    run(scenario())
    [call] = fake_telegram.attempts()
    assert call.status == 200 and call.parse_mode == "HTML"  # accepted as HTML, no plain-text fallback
    assert '&lt;script&gt;alert("x")&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt; &amp;amp; &lt;/pre&gt;' in (call.text or "")
    assert '<script>alert("x")</script> & <b>bold</b> &amp; </pre>' in (call.visible or "")
    assert "<tag>: a < b && c > d" in (call.visible or "")


def test_secrets_in_messages_and_context_are_redacted(fake_telegram: FakeTelegram) -> None:
    async def scenario() -> None:
        reporter = reporter_for(fake_telegram)
        await reporter.initialize()
        exc = caught("GET https://api.exchange.com/v3/order?symbol=BTC&api_key=AKIA-SECRET-1&signature=deadbeef99 "
                     "failed; Authorization: Bearer eyJSECRET.token")
        await reporter.report_error(exc, additional_context={"password": "hunter2", "note": "token=tok-SECRET-2"})
        await wait_until(lambda: fake_telegram.sent())
        await reporter.shutdown()

    run(scenario())
    text = fake_telegram.sent()[0].text or ""
    for secret in ("AKIA-SECRET-1", "deadbeef99", "eyJSECRET", "hunter2", "tok-SECRET-2"):
        assert secret not in text
    assert "api_key=REDACTED" in text and "password: REDACTED" in text


def test_test_connection_reports_bot_and_chats(fake_telegram: FakeTelegram) -> None:
    async def scenario() -> None:
        reporter = reporter_for(fake_telegram, chats=["1001", "555"])
        result = await reporter.test_connection()
        assert result and result.bot_username == BOT_USERNAME
        assert str(result) == f"ok: connected as @{BOT_USERNAME}"
        checked = await reporter.test_connection(send_message=True)
        assert not checked and checked.bot_username == BOT_USERNAME
        assert checked.chats["1001"] == "ok" and "chat not found" in checked.chats["555"]
        assert checked.as_dict()["ok"] is False

    run(scenario())


def test_disabled_reporter_does_nothing(fake_telegram: FakeTelegram) -> None:
    async def scenario() -> None:
        reporter = TelegramErrorReporter(TOKEN, ["1001"], enabled=False, api_base_url=fake_telegram.url)
        await reporter.initialize()
        assert not reporter.running
        assert await reporter.report_error(caught("ignored")) == "disabled"
        await reporter.shutdown()

    run(scenario())
    assert fake_telegram.calls == []


def test_shutdown_sends_pending_follow_ups(fake_telegram: FakeTelegram) -> None:
    async def scenario() -> None:
        reporter = reporter_for(fake_telegram, dedup_minutes=10)
        await reporter.initialize()
        for _ in range(3):
            await reporter.report_error(caught("repeated"))
        await reporter.shutdown()

    run(scenario())
    texts = [c.visible or "" for c in fake_telegram.sent()]
    assert len(texts) == 2 and "2 more like this" in texts[1]


def test_supergroup_migration_follows_the_new_chat_id(fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_trader.telegram")
    fake_telegram.chats.add("-1001002")
    fake_telegram.answer("-1002", 400, "Bad Request: group chat was upgraded to a supergroup chat",
                         migrate_to_chat_id=-1001002)

    async def scenario() -> None:
        reporter = reporter_for(fake_telegram, chats=["-1002"])
        await reporter.initialize()
        await reporter.report_error(caught("migrated"))
        await wait_until(lambda: fake_telegram.sent())
        await reporter.shutdown()

    run(scenario())
    assert fake_telegram.sent()[0].chat_id == "-1001002"
    assert "Update TELEGRAM_CHAT_IDS" in caplog.text


def test_reports_queued_but_never_started_count_as_failed_at_shutdown(fake_telegram: FakeTelegram) -> None:
    reporter = reporter_for(fake_telegram)
    assert reporter.submit(caught("queued before start")) == "queued"
    run(reporter.shutdown())
    assert reporter.stats["failed"] == 1
    assert reporter.submit(caught("after shutdown")) == "disabled"
    assert fake_telegram.calls == []
