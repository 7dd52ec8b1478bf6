"""RedisPoolMonitor: redis-py connection pool gauges, PING latency and per-operation timings.

Metric names and labels (each series has the pool's name, ``pool``): :mod:`otel_trader.metric_catalog`.

The pool gauges are observable instruments: they are read from the pool when metrics are
exported (each Prometheus scrape, each OTLP export); no background task has to call the
health endpoint to keep them fresh. Pool sizes come from redis-py's
pool internals (``_get_in_use_connections``/``_get_free_connections`` in redis-py ≥ 7, the
underlying lists before), for ``redis.ConnectionPool``, ``redis.BlockingConnectionPool`` and
their ``redis.asyncio`` counterparts.

Usage::

    monitor = RedisPoolMonitor(pool, name="cache")       # a pool or a client with .connection_pool
    async with monitor.operation("get"):
        value = await client.get("k")
    stats = monitor.get_pool_stats()
    health = await monitor.health_check()                # PING; updates latency, duration, errors

The latency gauge has no unit on purpose: a unit ``ms`` would be appended to the Prometheus
name (``redis_connection_latency_ms_milliseconds``).
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterable
from time import perf_counter
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from otel_trader.redaction import redact_text
from otel_trader.sdk.span_helpers import error_type as _qualified_error_type
from otel_trader.trading.labels import BoundedLabel, PerProvider, count_label_overflow

__all__ = ["OPERATION_BUCKETS", "RedisPoolMonitor"]

#: Seconds; Redis round trips on a LAN are sub-millisecond, a slow one takes tens of ms.
OPERATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

_monitors: weakref.WeakSet[RedisPoolMonitor] = weakref.WeakSet()
_monitors_lock = threading.Lock()
# Operation names come from code, but a name built from data must not explode the series.
_operation_label = BoundedLabel("operation", 100, count_label_overflow)
_error_label = BoundedLabel("error_type", 50, count_label_overflow)


def _live_monitors() -> list[RedisPoolMonitor]:
    with _monitors_lock:
        return list(_monitors)


def _observe(field: str) -> Any:
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        out = []
        for monitor in _live_monitors():
            try:
                value = monitor.get_pool_stats()[field]
            except Exception:  # a closed or foreign pool must not break the whole export
                continue
            out.append(Observation(value, {"pool": monitor.name}))
        return out

    return callback


def _observe_latency(_options: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(m.last_latency_ms, {"pool": m.name})
        for m in _live_monitors()
        if m.last_latency_ms is not None
    ]


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        meter.create_observable_gauge(
            "redis_pool_max_connections",
            callbacks=[_observe("max_connections")],
            unit="{connection}",
            description="Maximum connections of the Redis pool.",
        )
        meter.create_observable_gauge(
            "redis_pool_active_connections",
            callbacks=[_observe("active_connections")],
            unit="{connection}",
            description="Redis pool connections currently checked out.",
        )
        meter.create_observable_gauge(
            "redis_pool_utilization_percent",
            callbacks=[_observe("utilization_percent")],
            unit="%",
            description="Redis pool utilization as a percentage (0-100).",
        )
        meter.create_observable_gauge(
            "redis_connection_latency_ms",
            callbacks=[_observe_latency],
            description="Round trip of the last successful health-check PING, in milliseconds.",
        )
        self.duration = meter.create_histogram(
            "redis_operation_duration_seconds",
            unit="s",
            description="Duration of Redis operations, in seconds.",
            explicit_bucket_boundaries_advisory=OPERATION_BUCKETS,
        )
        self.errors = meter.create_counter(
            "redis_operation_errors_total",
            unit="{error}",
            description="Redis operations that raised, by operation and error type.",
        )


_instruments: PerProvider[_Instruments] = PerProvider(_Instruments, "otel_trader.redis")


def _pool_counts(pool: Any) -> tuple[int, int]:
    """(in use, idle) connections of a redis-py sync or asyncio pool."""
    in_use = getattr(pool, "_get_in_use_connections", None)
    free = getattr(pool, "_get_free_connections", None)
    if in_use is not None and free is not None:  # redis-py >= 7
        return len(list(in_use())), len(list(free()))
    if hasattr(pool, "_in_use_connections"):  # ConnectionPool, asyncio pools
        return len(pool._in_use_connections), len(pool._available_connections)
    if hasattr(pool, "_connections"):  # sync BlockingConnectionPool: idle ones sit in the queue
        idle = sum(1 for c in list(pool.pool.queue) if c is not None)
        return len(pool._connections) - idle, idle
    raise TypeError(f"not a redis-py connection pool: {type(pool).__name__}")


class _Operation:
    """Times one Redis operation (sync or async block) and counts it if it raises."""

    __slots__ = ("monitor", "labels", "_start")

    def __init__(self, monitor: RedisPoolMonitor, name: str) -> None:
        self.monitor = monitor
        self.labels = {"pool": monitor.name, "operation": _operation_label(name.lower())}
        self._start = 0.0

    def __enter__(self) -> _Operation:
        self._start = perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        duration = perf_counter() - self._start
        inst = _instruments.get()
        if inst is None:
            return
        inst.duration.record(duration, self.labels)
        if exc is not None:
            kind = type(exc).__name__
            if isinstance(exc, asyncio.TimeoutError | TimeoutError):
                kind = "TimeoutError"
            inst.errors.add(1, {**self.labels, "error_type": _error_label(kind)})

    async def __aenter__(self) -> _Operation:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)


class RedisPoolMonitor:
    """Metrics and health of one redis-py connection pool (sync or asyncio).

    ``pool`` is a ``redis.ConnectionPool`` / ``redis.asyncio.ConnectionPool`` (or Blocking
    variant), or a client, whose ``connection_pool`` is used. Give each monitored pool its own
    ``name``: it is the ``pool`` label.
    """

    def __init__(self, pool: Any, name: str = "default", *, health_timeout: float = 2.0) -> None:
        pool = getattr(pool, "connection_pool", pool)
        _pool_counts(pool)  # fail now, not at export time, on something that is not a pool
        self.pool = pool
        self.name = name
        self.health_timeout = health_timeout
        #: Round trip of the last successful health-check PING in ms (None before the first).
        self.last_latency_ms: float | None = None
        self.is_async = _is_async_pool(pool)
        with _monitors_lock:
            _monitors.add(self)
        _instruments.get()

    def close(self) -> None:
        """Stop reporting this pool (the pool itself is left alone)."""
        with _monitors_lock:
            _monitors.discard(self)

    def get_pool_stats(self) -> dict[str, Any]:
        """Pool size now: max, active (checked out), idle, created connections and utilization %."""
        _instruments.get()
        active, idle = _pool_counts(self.pool)
        max_connections = int(self.pool.max_connections or 0)
        utilization = 100.0 * active / max_connections if max_connections else 0.0
        return {
            "pool": self.name,
            "max_connections": max_connections,
            "active_connections": active,
            "idle_connections": idle,
            "created_connections": active + idle,
            "utilization_percent": round(utilization, 2),
        }

    def operation(self, name: str) -> _Operation:
        """Time a Redis operation: ``with monitor.operation("get"):`` or ``async with``.

        Records ``redis_operation_duration_seconds{pool,operation}``; an exception raised in
        the block also adds ``redis_operation_errors_total{pool,operation,error_type}`` and
        propagates.
        """
        return _Operation(self, name)

    async def health_check(self, timeout: float | None = None) -> dict[str, Any]:
        """PING through the pool; return ``{"status": "healthy"|"unhealthy", ...}`` (never raises).

        Records the PING as operation ``ping``; on success sets ``redis_connection_latency_ms``.
        A sync pool is pinged in a worker thread, so the event loop is not blocked.
        """
        timeout = self.health_timeout if timeout is None else timeout
        start = perf_counter()
        try:
            with self.operation("ping"):
                if self.is_async:
                    await asyncio.wait_for(self._async_ping(), timeout)
                else:
                    await asyncio.wait_for(asyncio.to_thread(self._sync_ping), timeout)
        except Exception as exc:
            return {
                "status": "unhealthy",
                "pool": self.name,
                "error": f"{_qualified_error_type(exc)}: {redact_text(str(exc)) or 'timed out'}",
                "pool_stats": self.get_pool_stats(),
            }
        latency = (perf_counter() - start) * 1000.0
        self.last_latency_ms = latency
        return {
            "status": "healthy",
            "pool": self.name,
            "latency_ms": round(latency, 3),
            "pool_stats": self.get_pool_stats(),
        }

    def _sync_ping(self) -> None:
        import redis

        redis.Redis(connection_pool=self.pool).ping()

    async def _async_ping(self) -> None:
        import redis.asyncio

        await redis.asyncio.Redis(connection_pool=self.pool).ping()

    def __repr__(self) -> str:
        return f"<RedisPoolMonitor {self.name!r} {'asyncio' if self.is_async else 'sync'}>"


def _is_async_pool(pool: Any) -> bool:
    try:
        import redis.asyncio
    except ImportError:  # pragma: no cover - redis is needed to have a pool at all
        return False
    return isinstance(pool, redis.asyncio.ConnectionPool)
