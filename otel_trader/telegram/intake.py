"""The intake: from a reported error, on any thread, to the bounded queue the dispatcher drains.

It runs on the caller's path (a request, a log call, a worker thread), so it does no I/O and
never awaits: the reporter's gate, a dedup lookup (lock + dict), a snapshot of the error
(:mod:`.report`, no live objects kept) and an append to a bounded deque. A full deque drops the
report, counts it and warns once. Each accepted report wakes the dispatcher, at most once per
dispatcher turn, with ``call_soon_threadsafe`` from other threads.

A reported exception is marked, so the same exception arriving again (the middleware reported
it, then the server logs it) gives one report. Exceptions that refuse the attribute (``__slots__``)
stay unmarked; dedup still limits the noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from otel_trader.telegram.counters import ReportCounters
from otel_trader.telegram.dedup import Deduplicator, Fingerprint, FollowUp, fingerprint, normalise_message
from otel_trader.telegram.log import WarnOnce, logger
from otel_trader.telegram.report import (
    ErrorReport,
    capture_exception,
    capture_record,
    innermost_location,
    safe_str,
    type_name,
)
from otel_trader.telegram.settings import TelegramSettings
from otel_trader.web.middleware import RequestInfo

__all__ = ["Gate", "Intake", "QueuedItem"]

#: What the dispatcher takes from the intake: a report, or a dedup follow-up.
QueuedItem = ErrorReport | FollowUp
#: Asked with a report's level before dedup and the snapshot: None to go on, else the outcome
#: to return at once (``disabled``, or ``failed`` after counting it).
Gate = Callable[[int], "str | None"]

_MARK = "_otel_trader_reported"


class Intake:
    """Dedup, snapshot and the bounded queue of one reporter; ``submit*`` are thread-safe."""

    def __init__(
        self, settings: TelegramSettings, counters: ReportCounters, warn_once: WarnOnce, gate: Gate
    ) -> None:
        self._capacity = settings.queue_size
        self._counters = counters
        self._warn_once = warn_once
        self._gate = gate
        self._dedup = Deduplicator(settings.dedup_seconds)
        self._items: deque[QueuedItem] = deque()
        self._lock = threading.Lock()
        # Set by attach() once the dispatcher's loop exists; until then reports only queue.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._event: asyncio.Event | None = None
        self._wakeup_pending = False

    # -- submitting (any thread) -----------------------------------------------------------------

    def submit(
        self,
        exc: BaseException,
        level: int = logging.ERROR,
        context: Mapping[str, Any] | None = None,
        request: RequestInfo | None = None,
    ) -> str:
        """Queue a report of ``exc``: ``queued``, ``suppressed``, ``dropped``, ``duplicate``, …; never raises."""
        try:
            if getattr(exc, _MARK, False):
                return "duplicate"  # already reported (the middleware, then a log line of it)
            key = fingerprint(type_name(exc), innermost_location(exc), safe_str(exc, 400))
            outcome = self._offer(
                key, level, lambda: capture_exception(exc, level, context=context, request=request)
            )
            if outcome != "disabled":
                with contextlib.suppress(Exception):
                    setattr(exc, _MARK, True)
            return outcome
        except Exception:
            logger.debug("otel-trader: error report could not be queued", exc_info=True)
            return "error"

    def submit_record(self, record: logging.LogRecord) -> str:
        """Queue a report of a log record (its exception's, if it has one); never raises."""
        try:
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None:
                if getattr(exc, _MARK, False):
                    return "duplicate"
                key = fingerprint(type_name(exc), innermost_location(exc), safe_str(exc, 400))
            else:
                # The template, not the formatted message: one fingerprint per log call site.
                template = record.msg if isinstance(record.msg, str) else safe_str(record.msg, 400)
                key = (
                    f"log:{record.name}",
                    f"{record.pathname}:{record.lineno}",
                    normalise_message(template),
                )
            outcome = self._offer(key, record.levelno, lambda: capture_record(record))
            if exc is not None and outcome != "disabled":
                with contextlib.suppress(Exception):
                    setattr(exc, _MARK, True)
            return outcome
        except Exception:
            logger.debug("otel-trader: log record could not be queued", exc_info=True)
            return "error"

    def _offer(self, key: Fingerprint, level: int, snapshot: Callable[[], ErrorReport]) -> str:
        refused = self._gate(level)
        if refused is not None:
            return refused
        if not self._dedup.admit(key, level):
            self._counters.count(level, "suppressed")
            return "suppressed"
        report = snapshot()  # only for occurrences that are sent: a suppressed one costs a lookup
        self._dedup.remember(key, report)
        return "queued" if self.enqueue(report) else "dropped"

    def enqueue(self, item: QueuedItem) -> bool:
        """Append ``item`` and wake the dispatcher; False (counted, warned once) when full."""
        with self._lock:
            if len(self._items) >= self._capacity:
                full = True
            else:
                full = False
                self._items.append(item)
        if full:
            self._counters.count_dropped()
            self._warn_once(
                "queue_full",
                "otel-trader: Telegram report queue is full (%d); dropping reports",
                self._capacity,
            )
            return False
        self._wake()
        return True

    def queue_due_follow_ups(self) -> None:
        """Queue the follow-ups of dedup windows that have ended (the dispatcher's sweep)."""
        for follow in self._dedup.due():
            self.enqueue(follow)

    def queue_all_follow_ups(self) -> None:
        """Queue the follow-up of every window with suppressed occurrences, now (at shutdown)."""
        for follow in self._dedup.flush():
            self.enqueue(follow)

    # -- draining (the event loop) ---------------------------------------------------------------

    @property
    def empty(self) -> bool:
        """Whether nothing waits for the dispatcher."""
        return not self._items

    def pop(self) -> QueuedItem | None:
        """The oldest queued item, or None."""
        with self._lock:
            return self._items.popleft() if self._items else None

    def fail_leftovers(self) -> None:
        """Empty the queue, counting its reports as ``failed``: not sent in time is not silently lost."""
        with self._lock:
            leftovers = list(self._items)
            self._items.clear()
        for item in leftovers:
            if isinstance(item, ErrorReport):
                self._counters.count(item.level, "failed")

    # -- waking the dispatcher -------------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the dispatcher on ``loop`` from now on; call on that loop's thread."""
        self._loop_thread = threading.get_ident()
        self._event = asyncio.Event()
        self._loop = loop

    def wake_if_queued(self) -> None:
        """Wake the dispatcher for reports queued before :meth:`attach`."""
        if self._items and self._event is not None:
            self._event.set()

    async def wait(self, timeout: float) -> None:
        """Until a report is queued or ``timeout`` seconds pass (the dispatcher, after attach())."""
        assert self._loop is not None and self._event is not None
        # A timer setting the event, not asyncio.wait_for: before Python 3.12, wait_for that is
        # cancelled in the loop turn its awaitable completes returns normally, and the dispatcher
        # would then outlive shutdown's cancel().
        timer = self._loop.call_later(timeout, self._event.set)
        try:
            await self._event.wait()
        finally:
            timer.cancel()
        self._event.clear()
        self._wakeup_pending = False

    def _wake(self) -> None:
        loop, event = self._loop, self._event
        if loop is None or event is None or self._wakeup_pending:
            return
        self._wakeup_pending = True
        if threading.get_ident() == self._loop_thread:
            event.set()
        else:
            # RuntimeError: the loop is closed, nothing will send any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)
