"""One time budget for everything otel-trader waits on while the process exits.

On its way out a process may wait on the network several times: the Telegram reporter's
``shutdown()`` sending what is queued, the telemetry flush at the end of the lifespan, and, when
the interpreter exits normally, the telemetry shutdown at atexit. Each of them draws on
:data:`exit_budget`, whose total is ``TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS`` (2 s by default), so
the exit waits that long at most in all, however many of them run and whatever the collector or
Telegram do. Seconds are counted as they are spent waiting, not by the wall clock, so a process
that stops an app and exits much later still has its budget at exit.

The budget restarts when an application starts (its lifespan begins) and when a reporter starts:
a process that serves several times (tests) gets a whole budget for each exit.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

__all__ = ["ExitBudget", "exit_budget", "shutdown_timeout"]


def shutdown_timeout() -> float:
    """TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS: the process TelemetryManager's, else the environment's."""
    from otel_trader.sdk.manager import current_manager
    from otel_trader.settings import ConfigError, TelemetryConfig

    manager = current_manager()
    if manager is not None:
        return float(manager.config.shutdown_timeout_seconds)
    try:
        return float(TelemetryConfig().shutdown_timeout_seconds)
    except ConfigError:  # reported where telemetry is configured; exit still needs a bound
        return float(TelemetryConfig.model_fields["shutdown_timeout_seconds"].default)


class ExitBudget:
    """Seconds left for exit-time waits; thread-safe (the loop and atexit both draw on it)."""

    def __init__(self) -> None:
        self._spent = 0.0
        self._lock = threading.Lock()

    def remaining(self, total: float | None = None) -> float:
        """Seconds still available out of ``total`` (default: :func:`shutdown_timeout`)."""
        total = shutdown_timeout() if total is None else total
        with self._lock:
            return max(0.0, total - self._spent)

    @property
    def spent(self) -> float:
        """Seconds already spent waiting in this exit."""
        with self._lock:
            return self._spent

    def spend(self, seconds: float) -> None:
        """Record ``seconds`` spent waiting."""
        with self._lock:
            self._spent += max(0.0, seconds)

    @contextlib.contextmanager
    def spending(self) -> Iterator[None]:
        """Record the time the block takes as spent."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.spend(time.monotonic() - start)

    def restart(self) -> None:
        """A new run: the next exit has the whole budget again."""
        with self._lock:
            self._spent = 0.0


#: The process's exit budget.
exit_budget = ExitBudget()
