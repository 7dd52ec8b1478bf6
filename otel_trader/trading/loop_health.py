"""Event-loop health of the bot process: ``asyncio_event_loop_lag_seconds`` and blocked-loop warnings.

A watchdog thread per monitored loop schedules a no-op on the loop every
:data:`PROBE_INTERVAL_SECONDS` (``call_soon_threadsafe``) and measures how long the loop took to
run it: that is how long any callback, ready task step or I/O event waiting right then would
have waited. The lag goes to the histogram ``asyncio_event_loop_lag_seconds`` (no labels).

When the no-op has not run after the block threshold (``TELEMETRY_LOOP_BLOCK_THRESHOLD_SECONDS``,
default 0.1 s) the loop is blocked *now*: the thread logs one warning naming the task, its
innermost stack frames and, when the blocking code runs inside a span, the span's trace id
(the record is emitted in a copy of the blocked task's context, so the exported log record is
linked to that trace). A thread can report a loop that never comes back, which the loop
itself could not. A block longer than the threshold plus the probe interval (0.35 s by
default) is always reported; a shorter one when a probe lands in it. At most one warning per :data:`WARN_EVERY_SECONDS` per blocking place (the
function the loop was running), with the number of further blocks there in between, so a
new culprit is never hidden behind an old one.

Coordinated omission: while the loop is blocked the thread waits for its probe and sends no
new ones, so a 10 s block would be one sample among thousands. Each probe that would have
been sent during the wait is recorded too, with the lag it would have seen (10 s, 9.75 s, …,
at most :data:`MAX_CORRECTED_SAMPLES`), so the histogram is time-weighted: its p99 is the lag
exceeded 1 % of the time.

On by default wherever telemetry is on: ``instrument_app`` starts it with the app's lifespan,
and ``trading.feed(...)`` starts it for the loop it is created in. ``TELEMETRY_LOOP_MONITOR=false``
switches it off; :func:`monitor_event_loop` starts it explicitly. Without an installed
MeterProvider nothing is started. Cost: one thread wake-up and one loop wake-up per probe,
≈ 4 per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import logging
import math
import os
import sys
import threading
import traceback
import weakref
from time import perf_counter
from types import FrameType
from typing import Any

from opentelemetry import metrics, trace

from otel_trader.trading.labels import PerProvider

__all__ = [
    "DEFAULT_BLOCK_THRESHOLD_SECONDS",
    "LAG_BUCKETS",
    "MAX_CORRECTED_SAMPLES",
    "PROBE_INTERVAL_SECONDS",
    "WARN_EVERY_SECONDS",
    "LoopMonitor",
    "ensure_monitor",
    "monitor_event_loop",
]

PROBE_INTERVAL_SECONDS = 0.25
DEFAULT_BLOCK_THRESHOLD_SECONDS = 0.1
WARN_EVERY_SECONDS = 10.0
MAX_CORRECTED_SAMPLES = 240
#: Seconds: an idle loop answers in tens of µs, a busy one in a few ms; 100 ms is asyncio's own
#: "slow callback" threshold.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Innermost frames of the blocking code shown in the warning.
STACK_FRAMES = 8
#: Places throttled one by one (further ones share one throttle).
MAX_SITES = 256

logger = logging.getLogger("otel_trader")

_HANDLE_RUN = asyncio.events.Handle._run.__code__


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        self.lag = meter.create_histogram(
            "asyncio_event_loop_lag_seconds",
            unit="s",
            description="Time the asyncio event loop took to run a callback scheduled every "
            f"{PROBE_INTERVAL_SECONDS:g} s, in seconds (time-weighted while it is blocked).",
            explicit_bucket_boundaries_advisory=LAG_BUCKETS,
        )


_instruments: PerProvider[_Instruments] = PerProvider(_Instruments, "otel_trader.loop")


class LoopMonitor:
    """The watchdog thread of one event loop (see the module docstring); made by :func:`monitor_event_loop`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        interval: float = PROBE_INTERVAL_SECONDS,
        block_threshold: float = DEFAULT_BLOCK_THRESHOLD_SECONDS,
        warn_every: float = WARN_EVERY_SECONDS,
    ) -> None:
        if not interval > 0 or not block_threshold > 0:
            raise ValueError(
                f"interval and block_threshold must be positive, got {interval}, {block_threshold}"
            )
        self._loop = weakref.ref(loop)
        self.interval = interval
        self.block_threshold = block_threshold
        self.warn_every = warn_every
        #: Probes recorded (corrected samples not included) and blocks seen past the threshold.
        self.probes = 0
        self.blocks = 0
        self._loop_thread: int | None = None
        self._answered = threading.Event()
        self._answered_at = 0.0
        self._stop = threading.Event()
        #: Where the loop was blocked (the outermost frame of the callback it ran) -> (time of the
        #: last warning, blocks there since): each place is throttled on its own.
        self._sites: dict[tuple[str, str], tuple[float, int]] = {}
        self._thread = threading.Thread(target=self._run, name="otel-trader-loop-monitor", daemon=True)

    @property
    def running(self) -> bool:
        """Whether the watchdog thread is alive."""
        return self._thread.is_alive()

    def start(self) -> LoopMonitor:
        """Start the watchdog thread (once)."""
        loop = self._loop()
        if loop is not None and asyncio.events._get_running_loop() is loop:
            self._loop_thread = threading.get_ident()
        if not self._thread.is_alive() and not self._stop.is_set():
            self._thread.start()
        return self

    def stop(self, timeout: float = 0.0) -> None:
        """Stop the watchdog thread (it also exits by itself when its loop is closed).

        ``timeout`` > 0 waits that long for the thread; not from the loop's own thread, where the
        wait would hold the loop the thread may be probing.
        """
        self._stop.set()
        if timeout > 0 and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        loop = self._loop()
        with _lock:
            if loop is not None and _monitors.get(loop) is self:
                del _monitors[loop]

    # -- the watchdog thread ------------------------------------------------------------------

    def _answer(self) -> None:  # on the loop
        self._answered_at = perf_counter()
        self._loop_thread = threading.get_ident()
        self._answered.set()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                loop = self._loop()
                if loop is None or loop.is_closed():
                    return
                if not loop.is_running():
                    del loop
                    self._stop.wait(self.interval)
                    continue
                self._answered.clear()
                sent = perf_counter()
                try:
                    loop.call_soon_threadsafe(self._answer)
                except RuntimeError:  # closed in between
                    return
                if not self._answered.wait(self.block_threshold):
                    if self._stop.is_set():
                        return
                    if not loop.is_running():  # stopped, not blocked: the probe runs when it restarts
                        continue
                    self._blocked(loop, sent)
                    while not self._answered.wait(self.interval):
                        if self._stop.is_set() or loop.is_closed():
                            return
                        if not loop.is_running():
                            break
                    if not self._answered.is_set():
                        continue
                del loop
                self._record(self._answered_at - sent)
                self._stop.wait(max(0.0, self.interval - (perf_counter() - sent)))
        except Exception:  # the watchdog must never take the process down
            logger.debug("otel-trader: event-loop monitor stopped", exc_info=True)

    def _record(self, lag: float) -> None:
        self.probes += 1
        inst = _instruments.get()
        if inst is None:
            return
        inst.lag.record(max(0.0, lag))
        # The probes the wait kept from being sent, each with the lag it would have seen.
        missed = lag - self.interval
        for _ in range(MAX_CORRECTED_SAMPLES):
            if missed <= 0:
                break
            inst.lag.record(missed)
            missed -= self.interval

    def _blocked(self, loop: asyncio.AbstractEventLoop, sent: float) -> None:
        self.blocks += 1
        now = perf_counter()
        task = None
        with contextlib.suppress(Exception):  # a loop implementation without the task registry
            task = asyncio.current_task(loop)
        frame = sys._current_frames().get(self._loop_thread) if self._loop_thread is not None else None
        frames = _frames(frame) if frame is not None else []
        site = _site(task, frames)
        if site not in self._sites and len(self._sites) >= MAX_SITES:
            site = ("", "")
        last, unreported = self._sites.get(site, (-math.inf, 0))
        if now - last < self.warn_every:
            self._sites[site] = (last, unreported + 1)
            return
        self._sites[site] = (now, 0)
        context = _handle_context(frame) or (_task_context(task) if task is not None else None)
        span_context = _span_context(context)
        trace_id = format(span_context.trace_id, "032x") if span_context is not None else None
        stack = "".join(_format(frames)) if frames else "  (stack not available)\n"
        message = (
            "otel-trader: the asyncio event loop has been blocked for %.3f s (threshold %.3f s) by %s%s%s; "
            "innermost frames:\n%s"
        )
        args = (
            now - sent,
            self.block_threshold,
            f"task {task.get_name()!r}" if task is not None else "a callback outside any task",
            f", trace_id={trace_id}" if trace_id else "",
            f" ({unreported} more blocks there since the last warning)" if unreported else "",
            stack.rstrip("\n"),
        )
        # In a copy of the blocked task's context, so the record carries its trace and span ids.
        if context is not None:
            context.copy().run(logger.warning, message, *args)
        else:
            logger.warning(message, *args)


def _site(task: asyncio.Task[Any] | None, frames: list[tuple[FrameType, int]]) -> tuple[str, str]:
    """Where the loop is blocked, for throttling: the task's coroutine, else the innermost function."""
    if task is not None:
        code = getattr(task.get_coro(), "cr_code", None) or getattr(task.get_coro(), "gi_code", None)
        if code is not None:
            return code.co_filename, code.co_name
    if frames:
        code = frames[-1][0].f_code
        return code.co_filename, code.co_name
    return "", ""


def _task_context(task: asyncio.Task[Any]) -> contextvars.Context | None:
    """The context ``task`` runs in: ``get_context()`` (3.12+), else what the C task references."""
    get_context = getattr(task, "get_context", None)
    if get_context is not None:
        return get_context()  # type: ignore[no-any-return]
    # Python 3.11's C task keeps its context private but reports it to the garbage collector.
    for referent in gc.get_referents(task):
        if isinstance(referent, contextvars.Context):
            return referent
    return None


def _handle_context(frame: FrameType | None) -> contextvars.Context | None:
    """The context the loop is running a callback in (``Handle._run``'s), from its thread's frame.

    asyncio's own loop only: uvloop's handles are compiled (no frame); then the task's context.
    """
    while frame is not None:
        if frame.f_code is _HANDLE_RUN:
            context = getattr(frame.f_locals.get("self"), "_context", None)
            return context if isinstance(context, contextvars.Context) else None
        frame = frame.f_back
    return None


def _span_context(context: contextvars.Context | None) -> Any:
    """The valid span context current in ``context``, else None."""
    if context is None:
        return None
    from opentelemetry.context import _RUNTIME_CONTEXT

    var = getattr(_RUNTIME_CONTEXT, "_current_context", None)
    if not isinstance(var, contextvars.ContextVar):
        return None
    otel_context = context.get(var)
    if otel_context is None:
        return None
    span_context = trace.get_current_span(otel_context).get_span_context()
    return span_context if span_context.is_valid else None


def _frames(frame: FrameType) -> list[tuple[FrameType, int]]:
    """The frames of the code the loop runs, outermost (the callback it was handed) first."""
    frames: list[tuple[FrameType, int]] = []
    for f, lineno in traceback.walk_stack(frame):
        if f.f_code is _HANDLE_RUN:
            break
        frames.append((f, lineno))
    frames.reverse()
    return frames


def _format(frames: list[tuple[FrameType, int]]) -> list[str]:
    """The innermost :data:`STACK_FRAMES` frames, formatted like a traceback."""
    return traceback.StackSummary.extract(frames[-STACK_FRAMES:], capture_locals=False).format()


# -- starting -------------------------------------------------------------------------------

_lock = threading.Lock()
_monitors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopMonitor] = weakref.WeakKeyDictionary()
#: The loop ensure_monitor() last looked at, so a repeated call from it costs one comparison.
_checked: weakref.ref[asyncio.AbstractEventLoop] | None = None


def _settings() -> tuple[bool, float]:
    """(monitor on, block threshold) from the process's configuration."""
    from otel_trader.sdk.manager import current_manager
    from otel_trader.settings import TelemetryConfig

    manager = current_manager()
    config = manager.config if manager is not None else TelemetryConfig()
    return (
        bool(getattr(config, "loop_monitor", True)),
        float(getattr(config, "loop_block_threshold_seconds", DEFAULT_BLOCK_THRESHOLD_SECONDS)),
    )


def monitor_event_loop(
    loop: asyncio.AbstractEventLoop | None = None,
    *,
    interval: float = PROBE_INTERVAL_SECONDS,
    block_threshold: float | None = None,
    force: bool = False,
) -> LoopMonitor | None:
    """Start monitoring ``loop`` (default: the running one); the loop's existing monitor if it has one.

    Returns None, starting nothing, while no MeterProvider is installed or when
    ``TELEMETRY_LOOP_MONITOR=false`` (``force=True`` ignores the setting). ``block_threshold``
    defaults to ``TELEMETRY_LOOP_BLOCK_THRESHOLD_SECONDS``.
    """
    if loop is None:
        loop = asyncio.events._get_running_loop()
        if loop is None:
            raise RuntimeError("monitor_event_loop() needs a running event loop or loop=")
    enabled, threshold = _settings()
    if (not enabled and not force) or _instruments.get() is None:
        return None
    with _lock:
        existing = _monitors.get(loop)
        if existing is not None and existing.running:
            return existing
        monitor = LoopMonitor(
            loop,
            interval=interval,
            block_threshold=block_threshold if block_threshold is not None else threshold,
        )
        _monitors[loop] = monitor
    return monitor.start()


def ensure_monitor() -> None:
    """Start the default monitor for the running loop, if any and if on; cheap when called again."""
    global _checked
    loop = asyncio.events._get_running_loop()
    if loop is None or (_checked is not None and _checked() is loop):
        return
    try:
        if monitor_event_loop(loop) is not None:
            _checked = weakref.ref(loop)
    except Exception:  # monitoring must never break the caller
        logger.debug("otel-trader: could not start the event-loop monitor", exc_info=True)


def monitors() -> list[LoopMonitor]:
    """The running monitors."""
    with _lock:
        return [m for m in _monitors.values() if m.running]


def _after_fork_in_child() -> None:
    # Threads do not survive a fork: a loop the child uses gets a new monitor.
    global _lock, _checked
    _lock = threading.Lock()
    _monitors.clear()
    _checked = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
