"""TelegramErrorReporter: errors in, Telegram messages out, never on the caller's path.

Flow::

    report_error / hook / log handler   any thread; no I/O, no awaiting the network
      → intake (.intake)                dedup window, snapshot, bounded queue
    dispatcher task (.dispatch)         event loop: renders once, fans out to one queue per chat
    one worker per chat (.delivery)     sendMessage with retries; a slow or broken chat only
                                        delays itself

This module is the facade over those parts: configuration, lifecycle (``initialize``,
``flush``, ``shutdown``), ``install`` on a TelemetryManager and ``test_connection``. Outcomes are
counted as :mod:`.counters` describes.

The reporter is given its telemetry: ``install(manager)`` registers its error hook on the
manager, and takes from it the service identity for the reports (:mod:`.identity`) and whether
a telemetry flush follows its shutdown. It never looks the process's TelemetryManager up itself.

Shutdown is bounded whatever the Bot API does: it sends for at most its deadline (by default
its share of the process's exit budget, :mod:`otel_trader.sdk.exit_budget`), gives up at once on a
retry that would end past the deadline, then stops the tasks without relying on them to
cooperate, and counts every report it could not send as ``failed``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from otel_trader.sdk.exit_budget import exit_budget
from otel_trader.telegram.connection import ConnectionResult, check_connection
from otel_trader.telegram.counters import ReportCounters
from otel_trader.telegram.delivery import Sender
from otel_trader.telegram.dispatch import dispatch, render, tick_seconds
from otel_trader.telegram.identity import ServiceIdentity
from otel_trader.telegram.intake import Intake, QueuedItem
from otel_trader.telegram.log import WarnOnce, logger
from otel_trader.telegram.settings import TelegramSettings
from otel_trader.telegram.slot import process_slot
from otel_trader.web.middleware import RequestInfo

if TYPE_CHECKING:
    from otel_trader.sdk.manager import TelemetryManager
    from otel_trader.telegram.api import BotApi

__all__ = ["EXIT_SHARE_WITH_TELEMETRY", "STOP_GRACE", "TelegramErrorReporter", "bot_api_class"]

#: What stopping the sender may take after the deadline (tasks ending, the client closing).
STOP_GRACE = 0.25
#: The reporter's share of the exit budget left when its shutdown starts, while a telemetry
#: flush may still follow it: a Telegram that hangs cannot take all of the telemetry's time.
EXIT_SHARE_WITH_TELEMETRY = 0.75


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
        #: The TelemetryManager given to install(): identity fallback, and its flush follows ours.
        self._telemetry: TelemetryManager | None = None
        self._use_identity(ServiceIdentity.resolve(settings))
        self._counters = ReportCounters()
        self._warn_once = WarnOnce()
        self._intake = Intake(settings, self._counters, self._warn_once, self._gate)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api: BotApi | None = None
        self._sender: Sender | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        #: The task that starts the sender from the error hook (kept so it is not collected).
        self._starting: asyncio.Task[None] | None = None
        #: Managers whose error hooks hold ours (removed at shutdown).
        self._managers: list[TelemetryManager] = []

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
        return self._counters.snapshot()

    @property
    def active_chats(self) -> list[str]:
        """Chats still receiving reports (bad chats and a bad token remove them)."""
        if self._sender is None:
            return list(self.settings.chat_ids)
        return self._sender.active_chats

    @property
    def identity(self) -> ServiceIdentity:
        """Service, environment and SigNoz URL the reports show (``service_name`` etc. as one value)."""
        return ServiceIdentity(self.service_name, self.environment, self.signoz_url)

    def _use_identity(self, identity: ServiceIdentity) -> None:
        self.service_name = identity.service_name
        self.environment = identity.environment
        self.signoz_url = identity.signoz_url

    def _resolve_identity(self) -> ServiceIdentity:
        telemetry = self._telemetry.config if self._telemetry is not None else None
        return ServiceIdentity.resolve(self.settings, telemetry)

    def _gate(self, level: int) -> str | None:
        # The intake's first question, on the caller's thread.
        if not self.enabled or self._closed:
            return "disabled"
        if self._sender is not None and not self._sender.token_ok:
            self._counters.count(level, "failed")
            return "failed"
        return None

    def _render(self, item: QueuedItem) -> str:
        return render(item, self.identity)

    # -- lifecycle -------------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Start the sender on the running event loop (idempotent; a no-op when disabled)."""
        if not self.enabled or self.running or self._closed:
            return
        api_class = bot_api_class()
        loop = self._loop = asyncio.get_running_loop()
        exit_budget.restart()  # a new run: its exit has the whole budget
        # The identity the reports show: the settings', then the telemetry given to install().
        self._use_identity(self._resolve_identity())
        self._intake.attach(loop)
        self._api = api_class(
            self.settings.api_base_url, self.settings.token(), self.settings.timeout_seconds
        )
        self._sender = Sender(self._api, loop, self.settings, self._counters, self._warn_once)
        # A fresh context: the sender must not inherit (and keep alive) whatever span was current
        # when the application started it.
        empty = contextvars.Context()
        self._sender.start(empty)
        tick = tick_seconds(self.settings.dedup_seconds)
        self._dispatcher = empty.run(
            loop.create_task, dispatch(self._intake, self._sender, self._render, tick, lambda: self._closed)
        )
        self._intake.wake_if_queued()  # reports queued before the sender existed
        process_slot.adopt(self)
        logger.info(
            "otel-trader: Telegram error reporting on: %d chat(s), dedup window %gs",
            len(self._sender.chats),
            self.settings.dedup_seconds,
        )

    async def shutdown(self, timeout: float | None = None) -> None:
        """Send what is queued (dedup follow-ups too) until the deadline, then stop.

        The deadline is ``timeout`` seconds, or by default this reporter's share of the process's
        exit budget (``TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS``, shared with the telemetry flush that
        follows at the end of the lifespan; see :mod:`otel_trader.sdk.exit_budget`): all of what is
        left, or three quarters of it while a telemetry flush may still follow, and at most
        ``TELEGRAM_FLUSH_TIMEOUT_SECONDS`` when that is set. Returns within the deadline plus
        :data:`STOP_GRACE` whatever the Bot API does; reports not sent by then count as failed.
        Call it on the loop :meth:`initialize` ran on.
        """
        if self._closed:
            return
        self._closing = True
        for manager in self._managers:
            manager.error_hooks.remove(self.hook)
        self._managers.clear()
        process_slot.release(self)
        if not self.running:
            # Never started: whatever was queued cannot be sent now.
            self._closed = True
            self._intake.fail_leftovers()
            return
        assert self._loop is not None and self._sender is not None
        started = self._loop.time()
        deadline = self._exit_share() if timeout is None else max(0.0, timeout)
        # A retry that would end too late: give that message up now.
        self._sender.give_up_after(started + deadline)
        self._intake.queue_all_follow_ups()
        await self.flush(deadline)
        self._closed = True
        await self._stop()
        if timeout is None:
            exit_budget.spend(self._loop.time() - started)
        logger.info("otel-trader: Telegram error reporting stopped: %s", self.stats)

    def _exit_share(self) -> float:
        """Seconds of the exit budget this reporter's shutdown may use (see :meth:`shutdown`).

        A quarter stays for the telemetry flush unless the reporter knows none follows: it was
        installed on a manager whose telemetry is off. Not installed, it cannot know, and
        keeps the quarter.
        """
        share = exit_budget.remaining()
        if self._telemetry is None or self._telemetry.configured:
            share *= EXIT_SHARE_WITH_TELEMETRY
        cap = self.settings.flush_timeout_seconds
        return share if cap is None else min(cap, share)

    async def _stop(self) -> None:
        """Cancel the sender tasks and close the client, waiting at most STOP_GRACE for both."""
        assert self._loop is not None and self._sender is not None
        stop_by = self._loop.time() + STOP_GRACE
        tasks = [t for t in (self._dispatcher, *self._sender.tasks) if t is not None]
        for task in tasks:
            task.cancel()
        # Bounded: shutdown must return even if a task does not end when cancelled.
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE)
        if pending:
            logger.warning("otel-trader: Telegram sender did not stop within %gs; abandoning it", STOP_GRACE)
        self._intake.fail_leftovers()
        self._sender.abandon()
        if self._api is not None:
            closing = self._loop.create_task(self._api.aclose())
            await asyncio.wait({closing}, timeout=max(0.01, stop_by - self._loop.time()))

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything queued so far has been handled; False on timeout."""
        if not self.running:
            return self._intake.empty
        assert self._loop is not None and self._sender is not None
        deadline = self._loop.time() + timeout
        while True:
            if self._intake.empty and self._sender.idle:
                return True
            if self._loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)

    def install(
        self, manager: TelemetryManager | None = None, *, middleware_added: bool = False
    ) -> TelegramErrorReporter:
        """Register :meth:`hook` as ``manager``'s error hook (default: the process TelemetryManager).

        Every MonitoringMiddleware of that manager then reports unhandled request exceptions,
        including apps already serving (they share the manager's hook list), so installing in
        lifespan startup works. It needs no event loop; ``initialize()`` can follow. The manager
        also becomes this reporter's telemetry: its service name, environment and SigNoz URL
        fill what the reporter's settings leave unset, and its flush follows our shutdown.
        """
        if manager is None:
            # Imported here: otel_trader.sdk.manager depends on this package (instrument_app wires the
            # reporter in), so this package uses it only when install() is not given a manager.
            from otel_trader.sdk.manager import get_telemetry_manager

            manager = get_telemetry_manager()
        if not manager and not middleware_added:
            logger.info(
                "otel-trader: telemetry is off, so no MonitoringMiddleware calls the Telegram hook; "
                "request errors reach Telegram only through logging (TelegramLogHandler)"
            )
        manager.error_hooks.add(self.hook)
        if manager not in self._managers:
            self._managers.append(manager)
        self._telemetry = manager
        self._use_identity(self._resolve_identity())
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
        return self._intake.submit(exc, level, context, request)

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
        return self._intake.submit_record(record)

    # -- diagnostics -----------------------------------------------------------------------------

    async def test_connection(self, send_message: bool = False) -> ConnectionResult:
        """Call ``getMe`` (and with ``send_message`` post a test message to every chat).

        Returns a :class:`ConnectionResult`: ``ok`` and the bot's username, or the error.
        """
        if not self.settings.bot_token:
            return ConnectionResult(False, error="no bot token configured (TELEGRAM_TOKEN)")
        api = bot_api_class()(
            self.settings.api_base_url, self.settings.token(), self.settings.timeout_seconds
        )
        try:
            return await check_connection(api, self.settings.chat_ids, self.identity, send_message)
        finally:
            await api.aclose()


def bot_api_class() -> type[BotApi]:
    """The Bot API client class; imports httpx, which only a running reporter needs."""
    try:
        from otel_trader.telegram.api import BotApi
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError("TelegramErrorReporter needs httpx: pip install 'otel-trader[httpx]'") from exc
    return BotApi
