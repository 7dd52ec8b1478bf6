"""TelegramErrorReporter: errors in, Telegram messages out, never on the caller's path.

Flow::

    report_error / hook / log handler  (any thread; no I/O, no awaiting the network)
        → dedup window (lock + dict)  → suppressed: counted, done
        → snapshot → bounded intake   → full: dropped, counted
    dispatcher task (event loop)      → formats, fans out to one bounded queue per chat
    one worker task per chat          → sendMessage with retries; a slow or broken chat only
                                        delays itself

Outcomes are counted per error occurrence in ``otel_trader_error_reports_total{level,result}``
(``sent`` = delivered to at least one chat, ``failed`` = to none, ``suppressed`` = folded into a
dedup follow-up) and ``otel_trader_error_reports_dropped_total`` (intake full), so
sent + failed + suppressed + dropped = errors reported (while the reporter runs).

Shutdown is bounded whatever the Bot API does: it sends for at most its deadline (by default
its share of the process's exit budget, :mod:`otel_trader.exit_budget`), gives up at once on a
retry that would end past the deadline, then stops the tasks without relying on them to
cooperate, and counts every report it could not send as ``failed``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics

from ..exit_budget import exit_budget
from ..middleware import RequestInfo
from .dedup import Deduplicator, FollowUp, fingerprint, normalise_message
from .format import format_follow_up, format_report, to_plain_text
from .report import ErrorReport, capture_exception, capture_record, innermost_location, safe_str, type_name
from .settings import TelegramSettings

if TYPE_CHECKING:
    from .api import ApiResult, BotApi

__all__ = [
    "ConnectionResult",
    "TelegramErrorReporter",
    "get_error_reporter",
    "set_error_reporter",
]

logger = logging.getLogger("otel_trader.telegram")

#: A retry_after longer than this is not waited out: the message fails and the chat pauses.
MAX_RETRY_AFTER = 300.0
#: What stopping the sender may take after the deadline (tasks ending, the client closing).
STOP_GRACE = 0.25
#: The reporter's share of the exit budget left when its shutdown starts, while telemetry
#: still has to flush after it: a Telegram that hangs cannot take all of the telemetry's time.
EXIT_SHARE_WITH_TELEMETRY = 0.75
_MAX_THROTTLED = 5
_MARK = "_otel_trader_reported"


@dataclass(frozen=True)
class ConnectionResult:
    """Result of :meth:`TelegramErrorReporter.test_connection`; truthy when the bot token works."""

    ok: bool
    bot_username: str | None = None
    bot_id: int | None = None
    error: str | None = None
    #: chat id → ``"ok"`` or the error, when a test message was sent.
    chats: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if not self.ok:
            return f"failed: {self.error}"
        chats = "".join(f", chat {c}: {r}" for c, r in self.chats.items())
        return f"ok: connected as @{self.bot_username}{chats}"

    def as_dict(self) -> dict[str, Any]:
        """Plain dict form (for JSON health output)."""
        return {
            "ok": self.ok,
            "bot_username": self.bot_username,
            "bot_id": self.bot_id,
            "error": self.error,
            "chats": dict(self.chats),
        }


class _Delivery:
    """One message fanned out to several chats; settles the metric when the last chat is done."""

    __slots__ = ("counted", "level", "ok", "pending", "reporter")

    def __init__(self, reporter: TelegramErrorReporter, level: int, pending: int, counted: bool) -> None:
        self.reporter, self.level, self.pending, self.counted, self.ok = (
            reporter,
            level,
            pending,
            counted,
            False,
        )

    def done(self, ok: bool) -> None:
        self.ok = self.ok or ok
        self.pending -= 1
        if self.pending == 0 and self.counted:
            self.reporter._count(self.level, "sent" if self.ok else "failed")


@dataclass
class _Chat:
    chat_id: str
    queue: asyncio.Queue[tuple[_Delivery, str]]
    disabled: bool = False
    #: The message being sent now; settled exactly once, by its worker or by shutdown.
    inflight: _Delivery | None = None
    paused_until: float = 0.0
    task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """Whether a message to this chat is being sent (or waits for its retry)."""
        return self.inflight is not None

    def settle(self, ok: bool) -> None:
        """Settle the message in flight, if any (a second call does nothing)."""
        delivery, self.inflight = self.inflight, None
        if delivery is not None:
            delivery.done(ok)


class TelegramErrorReporter:
    """Report errors to Telegram chats without ever blocking the code that reports them.

    ``TelegramErrorReporter(bot_token, chat_ids, enabled=True)``; unset options come from the
    environment (:class:`TelegramSettings`), then the defaults. Call ``await initialize()`` in the
    application's startup (on the loop that serves requests) and ``await shutdown()`` at exit.
    """

    def __init__(
        self,
        bot_token: str | None = None,
        chat_ids: list[str] | list[int] | str | None = None,
        enabled: bool = True,
        dedup_minutes: float | None = None,
        *,
        queue_size: int | None = None,
        api_base_url: str | None = None,
        signoz_url: str | None = None,
        service_name: str | None = None,
        environment: str | None = None,
        timeout_seconds: float | None = None,
        max_retries: int | None = None,
        retry_backoff_seconds: float | None = None,
        flush_timeout_seconds: float | None = None,
        min_level: str | None = None,
        settings: TelegramSettings | None = None,
    ) -> None:
        if settings is None:
            given = {
                "bot_token": bot_token,
                "chat_ids": chat_ids,
                "dedup_minutes": dedup_minutes,
                "queue_size": queue_size,
                "api_base_url": api_base_url,
                "signoz_url": signoz_url,
                "service_name": service_name,
                "environment": environment,
                "timeout_seconds": timeout_seconds,
                "max_retries": max_retries,
                "retry_backoff_seconds": retry_backoff_seconds,
                "flush_timeout_seconds": flush_timeout_seconds,
                "min_level": min_level,
            }
            settings = TelegramSettings(enabled=enabled, **{k: v for k, v in given.items() if v is not None})
        self.settings = settings
        self.enabled = settings.enabled
        self.service_name, self.environment, self.signoz_url = _identity(settings)
        self._dedup = Deduplicator(settings.dedup_seconds)
        self._intake: deque[ErrorReport | FollowUp] = deque()
        self._lock = threading.Lock()
        self._stats = {"sent": 0, "failed": 0, "suppressed": 0, "dropped": 0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wakeup: asyncio.Event | None = None
        self._wakeup_pending = False
        self._dispatcher: asyncio.Task[None] | None = None
        self._chats: list[_Chat] = []
        self._api: BotApi | None = None
        self._token_ok = True
        self._closing = False
        self._closed = False
        #: The task that starts the sender from the error hook (kept so it is not collected).
        self._starting: asyncio.Task[None] | None = None
        #: Loop time at which shutdown gives up sending; a retry ending later is not waited for.
        self._give_up_at = float("inf")
        #: Retry waits in progress and the loop time each ends (shutdown ends those past its deadline).
        self._sleepers: dict[asyncio.Future[None], float] = {}
        self._outage_failures = 0
        self._warned: set[str] = set()
        self._managers: list[Any] = []
        meter = metrics.get_meter("otel_trader.telegram")
        self._reports = meter.create_counter(
            "otel_trader_error_reports_total",
            unit="{report}",
            description="Error reports by outcome: sent, suppressed (dedup) or failed.",
        )
        self._dropped = meter.create_counter(
            "otel_trader_error_reports_dropped_total",
            unit="{report}",
            description="Error reports dropped because the reporter's queue was full.",
        )
        self._labels: dict[tuple[int, str], dict[str, str]] = {}

    def __repr__(self) -> str:
        return (
            f"TelegramErrorReporter(enabled={self.enabled}, chats={len(self.settings.chat_ids)}, "
            f"running={self.running})"
        )

    @classmethod
    def from_env(cls) -> TelegramErrorReporter:
        """A reporter configured from the environment only."""
        return cls(settings=TelegramSettings())

    # -- state -----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the sender tasks run."""
        return self._dispatcher is not None and not self._dispatcher.done()

    @property
    def stats(self) -> dict[str, int]:
        """Outcome counts since creation (the metrics' values, for health endpoints and tests)."""
        with self._lock:
            return dict(self._stats)

    @property
    def active_chats(self) -> list[str]:
        """Chats still receiving reports (bad chats and a bad token remove them)."""
        if not self._token_ok:
            return []
        if not self._chats:
            return list(self.settings.chat_ids)
        return [c.chat_id for c in self._chats if not c.disabled]

    def _count(self, level: int, result: str) -> None:
        key = (level, result)
        labels = self._labels.get(key)
        if labels is None:
            labels = self._labels[key] = {"level": str(logging.getLevelName(level)), "result": result}
        self._reports.add(1, labels)
        with self._lock:
            self._stats[result] += 1

    # -- lifecycle -------------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Start the sender on the running event loop (idempotent; a no-op when disabled)."""
        if not self.enabled or self.running or self._closed:
            return
        api_class = _bot_api_class()

        self._loop = asyncio.get_running_loop()
        exit_budget.restart()  # a new run: its exit has the whole budget
        # The telemetry manager may have been configured after this reporter was built.
        self.service_name, self.environment, self.signoz_url = _identity(self.settings)
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._api = api_class(
            self.settings.api_base_url, self.settings.token(), self.settings.timeout_seconds
        )
        self._chats = [_Chat(c, asyncio.Queue(self.settings.queue_size)) for c in self.settings.chat_ids]
        # A fresh context: the sender must not inherit (and keep alive) whatever span was current
        # when the application started it.
        empty = contextvars.Context()
        for chat in self._chats:
            chat.task = empty.run(self._loop.create_task, self._chat_worker(chat))
        self._dispatcher = empty.run(self._loop.create_task, self._dispatch())
        if self._intake:  # reports queued before the sender existed
            self._wakeup.set()
        if _process_reporter is None:
            set_error_reporter(self)
        logger.info(
            "otel-trader: Telegram error reporting on: %d chat(s), dedup window %gs",
            len(self._chats),
            self.settings.dedup_seconds,
        )

    async def shutdown(self, timeout: float | None = None) -> None:
        """Send what is queued (dedup follow-ups too) until the deadline, then stop.

        The deadline is ``timeout`` seconds, or by default this reporter's share of the process's
        exit budget (``TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS``, shared with the telemetry flush that
        follows at the end of the lifespan; see :mod:`otel_trader.exit_budget`): all of what is
        left, or three quarters of it while telemetry still has to flush, and at most
        ``TELEGRAM_FLUSH_TIMEOUT_SECONDS`` when that is set. Returns within the deadline plus
        :data:`STOP_GRACE` whatever the Bot API does; reports not sent by then count as failed.
        Call it on the loop :meth:`initialize` ran on.
        """
        if self._closed:
            return
        self._closing = True
        for manager in self._managers:
            with contextlib.suppress(ValueError):
                manager.error_hooks.remove(self.hook)
        self._managers.clear()
        _forget(self)
        if not self.running:
            # Never started: whatever was queued cannot be sent now.
            self._closed = True
            self._fail_leftovers()
            return
        assert self._loop is not None
        started = self._loop.time()
        deadline = self._exit_share() if timeout is None else max(0.0, timeout)
        self._give_up_at = started + deadline
        for waiter, end in list(self._sleepers.items()):
            if end > self._give_up_at:
                _release(waiter)  # a retry that would end too late: give that message up now
        for follow in self._dedup.flush():
            self._enqueue(follow)
        await self.flush(deadline)
        self._closed = True
        await self._stop()
        if timeout is None:
            exit_budget.spend(self._loop.time() - started)
        logger.info("otel-trader: Telegram error reporting stopped: %s", self.stats)

    def _exit_share(self) -> float:
        """Seconds of the exit budget this reporter's shutdown may use (see :meth:`shutdown`)."""
        from .. import manager as manager_module

        share = exit_budget.remaining()
        telemetry = manager_module._manager
        if telemetry is not None and telemetry.configured and not telemetry._shut_down:
            share *= EXIT_SHARE_WITH_TELEMETRY
        cap = self.settings.flush_timeout_seconds
        return share if cap is None else min(cap, share)

    async def _stop(self) -> None:
        """Cancel the sender tasks and close the client, waiting at most STOP_GRACE for both."""
        assert self._loop is not None
        stop_by = self._loop.time() + STOP_GRACE
        tasks = [t for t in (self._dispatcher, *(c.task for c in self._chats)) if t is not None]
        for task in tasks:
            task.cancel()
        # Bounded: shutdown must return even if a task does not end when cancelled.
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
        if pending:
            logger.warning("otel-trader: Telegram sender did not stop within %gs; abandoning it", STOP_GRACE)
        self._fail_leftovers()
        for chat in self._chats:
            chat.settle(False)  # in flight in a task that did not end
            while not chat.queue.empty():
                delivery, _ = chat.queue.get_nowait()
                delivery.done(False)
        if self._api is not None:
            closing = self._loop.create_task(self._api.aclose())
            await asyncio.wait({closing}, timeout=max(0.01, stop_by - self._loop.time()))

    def _fail_leftovers(self) -> None:
        # What could not be sent in time is a failure, not silently lost.
        with self._lock:
            leftovers = list(self._intake)
            self._intake.clear()
        for item in leftovers:
            if isinstance(item, ErrorReport):
                self._count(item.level, "failed")

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far has been handled; False on timeout."""
        if not self.running:
            return not self._intake
        assert self._loop is not None
        deadline = self._loop.time() + timeout
        while True:
            if not self._intake and all(c.queue.empty() and not c.busy for c in self._chats):
                return True
            if self._loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)

    def install(self, manager: Any = None, *, middleware_added: bool = False) -> TelegramErrorReporter:
        """Register :meth:`hook` as ``manager``'s error hook (default: the process TelemetryManager).

        Every MonitoringMiddleware of that manager then reports unhandled request exceptions,
        including apps already serving (they share the manager's hook list), so installing in
        lifespan startup works. It needs no event loop; ``initialize()`` can follow.
        """
        if manager is None:
            from ..manager import get_telemetry_manager

            manager = get_telemetry_manager()
        if not manager and not middleware_added:
            logger.info(
                "otel-trader: telemetry is off, so no MonitoringMiddleware calls the Telegram hook; "
                "request errors reach Telegram only through logging (TelegramLogHandler)"
            )
        if self.hook not in manager.error_hooks:
            manager.add_error_hook(self.hook)
        if manager not in self._managers:
            self._managers.append(manager)
        return self

    # -- intake (any thread; no I/O) -------------------------------------------------------------

    async def report_error(
        self,
        exc: BaseException,
        level: int = logging.ERROR,
        additional_context: Mapping[str, Any] | None = None,
    ) -> str:
        """Queue ``exc`` for Telegram and return at once: ``queued``, ``suppressed``, ``dropped``, ….

        Never waits for the network. Starts the sender if ``initialize()`` was not called.
        """
        if self.enabled and self._dispatcher is None and not self._closing:
            await self.initialize()
        return self.submit(exc, level, additional_context)

    def submit(
        self,
        exc: BaseException,
        level: int = logging.ERROR,
        context: Mapping[str, Any] | None = None,
        request: RequestInfo | None = None,
    ) -> str:
        """Synchronous :meth:`report_error` for code that cannot await (threads, callbacks)."""
        try:
            if getattr(exc, _MARK, False):
                return "duplicate"  # already reported (the middleware, then a log line of it)
            key = fingerprint(type_name(exc), innermost_location(exc), safe_str(exc, 400))
            outcome = self._submit(
                key, level, lambda: capture_exception(exc, level, context=context, request=request)
            )
            if outcome != "disabled":
                # Exceptions with __slots__ refuse the mark: dedup still limits the noise.
                with contextlib.suppress(Exception):
                    setattr(exc, _MARK, True)
            return outcome
        except Exception:
            logger.debug("otel-trader: error report could not be queued", exc_info=True)
            return "error"

    def hook(self, exc: BaseException, info: RequestInfo) -> None:
        """MonitoringMiddleware error hook: queue a report with the request's method, route, status, client.

        Called on the serving loop: a reporter installed but never initialized starts there, so a
        report cannot wait in the queue forever.
        """
        self.submit(exc, logging.ERROR, request=info)
        if self.enabled and self._dispatcher is None and not self._closing:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            # initialize() does not await before the sender exists: a second task finds it running.
            self._starting = loop.create_task(self.initialize())

    def report_record(self, record: logging.LogRecord) -> str:
        """Queue a log record (what :class:`TelegramLogHandler` calls)."""
        try:
            exc = record.exc_info[1] if record.exc_info else None
            if exc is not None:
                if getattr(exc, _MARK, False):
                    return "duplicate"
                key = fingerprint(type_name(exc), innermost_location(exc), safe_str(exc, 400))
            else:
                template = record.msg if isinstance(record.msg, str) else safe_str(record.msg, 400)
                key = (
                    f"log:{record.name}",
                    f"{record.pathname}:{record.lineno}",
                    normalise_message(template),
                )
            outcome = self._submit(key, record.levelno, lambda: capture_record(record))
            if exc is not None and outcome != "disabled":
                with contextlib.suppress(Exception):
                    setattr(exc, _MARK, True)
            return outcome
        except Exception:
            logger.debug("otel-trader: log record could not be queued", exc_info=True)
            return "error"

    def _submit(self, key: tuple[str, str, str], level: int, snapshot: Any) -> str:
        if not self.enabled or self._closed:
            return "disabled"
        if not self._token_ok:
            self._count(level, "failed")
            return "failed"
        if not self._dedup.admit(key, level):
            self._count(level, "suppressed")
            return "suppressed"
        report: ErrorReport = snapshot()
        self._dedup.remember(key, report)
        return "queued" if self._enqueue(report) else "dropped"

    def _enqueue(self, item: ErrorReport | FollowUp) -> bool:
        with self._lock:
            if len(self._intake) >= self.settings.queue_size:
                full = True
            else:
                full = False
                self._intake.append(item)
        if full:
            self._dropped.add(1)
            with self._lock:
                self._stats["dropped"] += 1
            self._warn_once(
                "queue_full",
                "otel-trader: Telegram report queue is full (%d); dropping reports",
                self.settings.queue_size,
            )
            return False
        self._wake()
        return True

    def _wake(self) -> None:
        loop, event = self._loop, self._wakeup
        if loop is None or event is None or self._wakeup_pending:
            return
        self._wakeup_pending = True
        if threading.get_ident() == self._loop_thread:
            event.set()
        else:
            # RuntimeError: the loop is closed, nothing will send any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    # -- sender (event loop) ---------------------------------------------------------------------

    def _tick(self) -> float:
        # Often enough to close dedup windows on time, rarely enough to cost nothing.
        window = self.settings.dedup_seconds
        return 1.0 if window <= 0 else min(1.0, max(0.05, window / 10))

    async def _dispatch(self) -> None:
        assert self._wakeup is not None and self._loop is not None
        tick = self._tick()
        while not self._closed:
            # A timer setting the event, not asyncio.wait_for: before Python 3.12, wait_for that
            # is cancelled in the loop turn its awaitable completes returns normally, and the
            # dispatcher would then outlive shutdown's cancel().
            timer = self._loop.call_later(tick, self._wakeup.set)
            try:
                await self._wakeup.wait()
            finally:
                timer.cancel()
            self._wakeup.clear()
            self._wakeup_pending = False
            try:
                for follow in self._dedup.due():
                    self._enqueue(follow)
            except Exception:
                logger.warning("otel-trader: Telegram dedup sweep failed", exc_info=True)
            while True:
                with self._lock:
                    item = self._intake.popleft() if self._intake else None
                if item is None:
                    break
                self._fan_out(item)
                await asyncio.sleep(0)  # formatting many messages must not hog the loop

    def _render(self, item: ErrorReport | FollowUp) -> str:
        try:
            if isinstance(item, FollowUp):
                return format_follow_up(item, service=self.service_name, environment=self.environment)
            return format_report(
                item, service=self.service_name, environment=self.environment, signoz_url=self.signoz_url
            )
        except Exception:
            logger.warning("otel-trader: formatting an error report failed", exc_info=True)
            if isinstance(item, FollowUp):
                return f"{item.count} more errors like the previous one"
            return f"{item.level_name}: {to_plain_text(item.error_type)}"[:1000]

    def _fan_out(self, item: ErrorReport | FollowUp) -> None:
        counted = isinstance(item, ErrorReport)
        chats = [c for c in self._chats if not c.disabled] if self._token_ok else []
        delivery = _Delivery(self, item.level, len(chats), counted)
        if not chats:
            if counted:
                self._count(item.level, "failed")
            return
        text = self._render(item)
        for chat in chats:
            try:
                chat.queue.put_nowait((delivery, text))
            except asyncio.QueueFull:
                self._warn_once(
                    f"chat_full:{chat.chat_id}",
                    "otel-trader: Telegram queue of chat %s is full; dropping its reports",
                    chat.chat_id,
                )
                delivery.done(False)

    async def _chat_worker(self, chat: _Chat) -> None:
        while True:
            delivery, text = await chat.queue.get()
            chat.inflight = delivery
            ok = False
            try:
                ok = await self._deliver(chat, text)
            except asyncio.CancelledError:
                chat.settle(False)
                raise
            except Exception:  # the sender must survive anything
                logger.warning("otel-trader: unexpected error sending to Telegram", exc_info=True)
            chat.settle(ok)

    async def _deliver(self, chat: _Chat, text: str) -> bool:
        assert self._api is not None and self._loop is not None
        attempts = throttled = 0
        parse_mode: str | None = "HTML"
        while True:
            if not self._token_ok or chat.disabled or self._loop.time() < chat.paused_until:
                return False
            result = await self._api.send_message(chat.chat_id, text, parse_mode)
            outcome = result.outcome
            if outcome == "ok":
                self._recovered()
                return True
            if outcome == "throttled":
                self._recovered()  # Telegram answered: not an outage
                wait = result.retry_after or 1.0
                until = self._loop.time() + wait
                throttled += 1
                if wait <= MAX_RETRY_AFTER and throttled <= _MAX_THROTTLED:
                    logger.debug("otel-trader: Telegram 429 for chat %s, waiting %gs", chat.chat_id, wait)
                    if await self._pause(wait):
                        continue
                chat.paused_until = until
                self._warn_once(
                    f"throttled:{chat.chat_id}",
                    "otel-trader: Telegram rate-limits chat %s (retry after %gs); reports to it "
                    "fail until then",
                    chat.chat_id,
                    wait,
                )
                return False
            if outcome == "retry":
                self._outage(result)
                attempts += 1
                if attempts > self.settings.max_retries:
                    return False
                if not await self._pause(self._backoff(attempts, result.retry_after)):
                    return False
                continue
            self._recovered()
            if outcome == "bad_token":
                if self._token_ok:
                    self._token_ok = False
                    logger.warning(
                        "otel-trader: Telegram rejected the bot token (%s %s); error reporting stopped. "
                        "Check TELEGRAM_TOKEN.",
                        result.status,
                        result.description,
                    )
                return False
            if outcome == "bad_chat":
                if not chat.disabled:
                    chat.disabled = True
                    logger.warning(
                        "otel-trader: Telegram chat %s cannot receive reports (%s %s); no more reports go "
                        "to it. Check TELEGRAM_CHAT_IDS and that the bot is a member.",
                        chat.chat_id,
                        result.status,
                        result.description,
                    )
                return False
            if outcome == "migrated" and result.migrate_to and result.migrate_to != chat.chat_id:
                logger.warning(
                    "otel-trader: Telegram chat %s became supergroup %s; sending there. Update TELEGRAM_CHAT_IDS.",
                    chat.chat_id,
                    result.migrate_to,
                )
                chat.chat_id = result.migrate_to
                continue
            if outcome == "bad_markup" and parse_mode is not None:
                # Our HTML should always parse; if not, the error still deserves to arrive.
                logger.warning(
                    "otel-trader: Telegram could not parse a report (%s); sending it as plain text",
                    result.description,
                )
                parse_mode, text = None, to_plain_text(text)
                continue
            self._warn_once(
                f"rejected:{result.description}",
                "otel-trader: Telegram rejected a report for chat %s: %s %s",
                chat.chat_id,
                result.status,
                result.description,
            )
            return False

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` before a retry; False, at once, if it would end past shutdown's deadline."""
        assert self._loop is not None
        end = self._loop.time() + seconds
        if end > self._give_up_at:
            return False
        waiter: asyncio.Future[None] = self._loop.create_future()
        timer = self._loop.call_later(seconds, _release, waiter)
        self._sleepers[waiter] = end
        try:
            await waiter  # released early by shutdown when ``end`` is past its deadline
        finally:
            timer.cancel()
            self._sleepers.pop(waiter, None)
        return end <= self._give_up_at

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        base = min(self.settings.retry_backoff_seconds * 2 ** (attempt - 1), 10.0)
        return base * random.uniform(0.8, 1.2)  # jitter: chats and processes do not retry in step

    def _outage(self, result: ApiResult) -> None:
        self._outage_failures += 1
        if self._outage_failures == 1:
            logger.warning(
                "otel-trader: Telegram Bot API unreachable or failing (%s); retrying, and reports fail "
                "until it is back (logged once per outage)",
                result.description if result.status is None else f"{result.status} {result.description}",
            )

    def _recovered(self) -> None:
        if self._outage_failures:
            logger.warning(
                "otel-trader: Telegram Bot API is back after %d failed attempt(s)", self._outage_failures
            )
            self._outage_failures = 0

    def _warn_once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._warned and len(self._warned) < 1000:
            self._warned.add(key)
            logger.warning(message, *args)

    # -- diagnostics -----------------------------------------------------------------------------

    async def test_connection(self, send_message: bool = False) -> ConnectionResult:
        """Call ``getMe`` (and with ``send_message`` post a test message to every chat).

        Returns a :class:`ConnectionResult`: ``ok`` and the bot's username, or the error.
        """
        if not self.settings.bot_token:
            return ConnectionResult(False, error="no bot token configured (TELEGRAM_TOKEN)")
        api = _bot_api_class()(
            self.settings.api_base_url, self.settings.token(), self.settings.timeout_seconds
        )
        try:
            me = await api.get_me()
            if not me.ok:
                where = f"HTTP {me.status}: " if me.status else ""
                return ConnectionResult(False, error=f"{where}{me.description}")
            info = me.result if isinstance(me.result, dict) else {}
            chats: dict[str, str] = {}
            if send_message:
                text = f"✅ otel-trader error reporting test from <b>{self.service_name}</b> [{self.environment}]"
                for chat_id in self.settings.chat_ids:
                    sent = await api.send_message(chat_id, text)
                    chats[chat_id] = "ok" if sent.ok else f"HTTP {sent.status}: {sent.description}"
            return ConnectionResult(
                ok=all(r == "ok" for r in chats.values()),
                bot_username=info.get("username"),
                bot_id=info.get("id"),
                error=None if all(r == "ok" for r in chats.values()) else "some chats failed",
                chats=chats,
            )
        finally:
            await api.aclose()


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _bot_api_class() -> type[BotApi]:
    try:
        from .api import BotApi  # httpx is only needed once a reporter really runs
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError("TelegramErrorReporter needs httpx: pip install 'otel-trader[httpx]'") from exc
    return BotApi


def _identity(settings: TelegramSettings) -> tuple[str, str, str | None]:
    """Service, environment and SigNoz URL: ours if set, else the running TelemetryManager's."""
    from .. import manager as manager_module

    config = manager_module._manager.config if manager_module._manager is not None else None
    service = settings.service_name or (config.service_name if config else None) or "unknown_service:python"
    environment = settings.environment or (config.environment if config else None) or "development"
    signoz = settings.signoz_url or (config.signoz_url if config else None)
    return service, environment, signoz


# -- the process reporter ----------------------------------------------------------------------

_process_reporter: TelegramErrorReporter | None = None
_from_env_checked = False
_process_lock = threading.Lock()


def get_error_reporter() -> TelegramErrorReporter | None:
    """The process's reporter, or None when Telegram reporting is not configured.

    The first initialized reporter becomes the process reporter; without one, a reporter is
    built from the environment when ``TELEGRAM_ERROR_REPORTING_ENABLED=true`` (invalid settings
    raise :class:`otel_trader.ConfigError` here: call this once at start-up).
    """
    global _from_env_checked, _process_reporter
    if _process_reporter is not None or _from_env_checked:
        return _process_reporter
    with _process_lock:
        if _process_reporter is None and not _from_env_checked:
            settings = TelegramSettings()
            _from_env_checked = True
            if settings.enabled:
                _process_reporter = TelegramErrorReporter(settings=settings)
    return _process_reporter


def set_error_reporter(reporter: TelegramErrorReporter | None) -> None:
    """Make ``reporter`` the process reporter (None: forget it and re-read the environment next time)."""
    global _from_env_checked, _process_reporter
    with _process_lock:
        _process_reporter = reporter
        _from_env_checked = reporter is not None


def _forget(reporter: TelegramErrorReporter) -> None:
    # After shutdown get_error_reporter() returns None rather than building a new reporter.
    global _process_reporter
    with _process_lock:
        if _process_reporter is reporter:
            _process_reporter = None


def current_reporter() -> TelegramErrorReporter | None:
    """Like :func:`get_error_reporter` but never raises (for the logging handler)."""
    try:
        return get_error_reporter()
    except Exception:
        return None
