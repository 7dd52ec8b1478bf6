"""shutdown() returns within its deadline whatever the Bot API does, and counts what it gave up.

The hostile case is a 429 with ``retry_after=3600``: it pauses the chat, so every report to it
fails at once and the sender goes idle within a few event-loop turns of shutdown. The scenario
is repeated with the 429 arriving before shutdown (with 1 to 5 loop turns between the last
reports and the call, so shutdown meets the sender at different points of its loop) and while
shutdown already waits (answered 0.05 s to past the deadline later).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time

import pytest

from otel_trader import TelegramErrorReporter

from .conftest import run, wait_until
from .fake_telegram import TOKEN, FakeTelegram

pytestmark = pytest.mark.timeout(240)

DEADLINE = 1.0
#: What stopping the sender may add after the deadline (cancelling tasks, closing the client).
MARGIN = 0.5

#: (reports after the first, loop turns before the last report, loop turns after it, 429 delay)
BEFORE_SHUTDOWN = [(b, j, k, 0.0) for b in (1, 2) for j in range(1, 6) for k in (1, 2)]
DURING_SHUTDOWN = [(b, 0, 0, d) for d in (0.05, 0.2, 0.5, 0.9, 1.3) for b in (0, 2)]


def caught(message: str) -> ValueError:
    try:
        raise ValueError(message)
    except ValueError as exc:
        return exc


def reporter_for(fake: FakeTelegram) -> TelegramErrorReporter:
    return TelegramErrorReporter(
        TOKEN, ["1001"], enabled=True, api_base_url=fake.url, dedup_minutes=0, retry_backoff_seconds=0.05
    )


async def hostile_shutdown(
    fake: FakeTelegram, burst: int, turns_before: int, turns_after: int, delay: float
) -> tuple[float, dict[str, int], int]:
    """One run: seconds shutdown() took (capped), the reporter's stats, reports submitted."""
    fake.reset()
    fake.answer("*", 429, "Too Many Requests: retry after 3600", retry_after=3600)
    fake.delay = delay
    reporter = reporter_for(fake)
    await reporter.initialize()
    reporter.submit(caught("first"))
    if not delay:
        await wait_until(lambda: reporter.stats["failed"] == 1)  # the 429 paused the chat
    for n in range(burst):
        reporter.submit(caught(f"burst {n}"))
    for _ in range(turns_before):
        await asyncio.sleep(0)
    reporter.submit(caught("last"))
    for _ in range(turns_after):
        await asyncio.sleep(0)
    start = time.monotonic()
    with contextlib.suppress(asyncio.TimeoutError):  # a hang: measured as the cap, then reported
        await asyncio.wait_for(reporter.shutdown(timeout=DEADLINE), DEADLINE + MARGIN + 2)
    took = time.monotonic() - start
    if delay:
        # The fake answers the abandoned request later; let it, before the next run scripts it.
        await wait_until(lambda: fake.attempts(), timeout=5)
    return took, reporter.stats, burst + 2


def test_shutdown_under_429_retry_after_3600_always_returns_and_counts(
    fake_telegram: FakeTelegram, telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="otel_trader.telegram")
    results = []
    for case in BEFORE_SHUTDOWN + DURING_SHUTDOWN:
        took, stats, submitted = run(hostile_shutdown(fake_telegram, *case), timeout=30)
        results.append((case, took, stats, submitted))
    times = sorted(took for _, took, _, _ in results)
    print(
        f"\n{len(results)} shutdowns under 429 retry_after=3600: max {times[-1]:.3f} s, median {times[len(times) // 2]:.3f} s"
    )
    slow = [(case, round(took, 3)) for case, took, _, _ in results if took > DEADLINE + MARGIN]
    assert not slow, f"shutdown(timeout={DEADLINE}) took longer than {DEADLINE + MARGIN}s: {slow}"
    for case, _, stats, submitted in results:
        # Nothing was sent: every report is a failure, none is lost uncounted.
        assert stats == {"sent": 0, "failed": submitted, "suppressed": 0, "dropped": 0}, (case, stats)
    total = sum(submitted for *_, submitted in results)
    assert re.search(
        rf'otel_trader_error_reports_total\{{[^}}]*result="failed"[^}}]*\}} {total}\.0', telemetry.scrape()
    )


def test_retry_wait_past_the_deadline_is_cut_short_by_shutdown(fake_telegram: FakeTelegram) -> None:
    """A 429 asking for 200 s (below the cap, so normally waited out): shutdown gives up at once."""
    fake_telegram.answer("1001", 429, "Too Many Requests: retry after 200", retry_after=200)

    async def scenario() -> tuple[float, dict[str, int]]:
        reporter = reporter_for(fake_telegram)
        await reporter.initialize()
        reporter.submit(caught("waits for the rate limit"))
        await wait_until(lambda: fake_telegram.attempts())
        await asyncio.sleep(0.05)  # the sender is now waiting out the retry_after
        reporter.submit(caught("queued behind it"))
        start = time.monotonic()
        await reporter.shutdown(timeout=DEADLINE)
        return time.monotonic() - start, reporter.stats

    took, stats = run(scenario())
    print(f"\nshutdown with a 200 s retry pending: {took:.3f} s")
    assert took < DEADLINE / 2, f"shutdown waited {took:.2f}s for a retry it could never make"
    assert stats == {"sent": 0, "failed": 2, "suppressed": 0, "dropped": 0}
    assert len(fake_telegram.attempts()) == 1  # the chat is paused: no request for the second


def test_retry_that_fits_in_the_deadline_is_delivered_during_shutdown(fake_telegram: FakeTelegram) -> None:
    """The 429 arrives after shutdown began; its retry_after (0.3 s) fits: the report still goes out."""
    fake_telegram.delay = 0.1
    fake_telegram.answer("1001", 429, "Too Many Requests: retry after 0.3", retry_after=0.3)

    async def scenario() -> tuple[float, dict[str, int]]:
        reporter = reporter_for(fake_telegram)
        await reporter.initialize()
        reporter.submit(caught("throttled at exit"))
        await asyncio.sleep(0.02)  # the request is in flight
        start = time.monotonic()
        await reporter.shutdown(timeout=DEADLINE)
        return time.monotonic() - start, reporter.stats

    took, stats = run(scenario())
    print(f"\nshutdown waiting out a 0.3 s retry_after: {took:.3f} s")
    assert stats == {"sent": 1, "failed": 0, "suppressed": 0, "dropped": 0}
    assert [c.status for c in fake_telegram.attempts()] == [429, 200]
    assert took < DEADLINE
