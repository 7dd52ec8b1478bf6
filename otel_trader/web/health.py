"""Health endpoints for Redis and the database, as a FastAPI router.

``make_health_router(redis=pool, engine=engine)`` serves (with the default prefix ``/health``):

* ``GET /health`` — every configured dependency; 200 when all are healthy, else 503 with
  ``"failing": ["redis", ...]``.
* ``GET /health/redis`` — PING through the pool (updates ``redis_connection_latency_ms``);
  503 when Redis is down. Only present when ``redis`` is given, like the two below.
* ``GET /health/redis/pool/stats`` — :meth:`RedisPoolMonitor.get_pool_stats`, always 200.
* ``GET /health/db`` — ``SELECT 1`` on the SQLAlchemy engine (sync or async); 503 when down.

Include it without a prefix: ``app.include_router(make_health_router(...))``, or pass
``prefix=""`` and add the prefix yourself.

The module-level ``health_router`` (no prefix, for the guides'
``app.include_router(health_router, prefix="/health")``) has all four routes and finds the
application's dependencies at request time: those given to :func:`register_health_dependencies`,
else the only :class:`RedisPoolMonitor` of the process (or the one named ``default``), else
``REDIS_URL`` and ``DATABASE_URL`` from the environment. A route whose dependency is unknown
answers 503 saying what to set; ``/health`` with nothing known answers 200 (liveness) and warns
once in the log that it checks nothing.

``/health`` is excluded from traces and RED metrics by ``MonitoringMiddleware``'s default
``TELEMETRY_EXCLUDED_PATHS``; the checks themselves run with instrumentation suppressed so
the Redis PING and ``SELECT 1`` do not start root spans either. Responses never contain
connection URLs or credentials.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from otel_trader.redaction import redact_text
from otel_trader.sdk.span_helpers import error_type
from otel_trader.trading.redis_pool import RedisPoolMonitor

__all__ = ["check_database", "health_router", "make_health_router", "register_health_dependencies"]

logger = logging.getLogger("otel_trader")


def _suppressed() -> Any:
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    return suppress_instrumentation()


async def check_database(engine: Any, timeout: float = 2.0) -> dict[str, Any]:
    """Run ``SELECT 1`` on a SQLAlchemy Engine or AsyncEngine; never raises."""
    from sqlalchemy import text

    start = perf_counter()
    try:
        if hasattr(engine, "sync_engine"):  # AsyncEngine

            async def run_async() -> None:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))

            await asyncio.wait_for(run_async(), timeout)
        else:

            def run_sync() -> None:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))

            await asyncio.wait_for(asyncio.to_thread(run_sync), timeout)
    except Exception as exc:
        return {
            "status": "unhealthy",
            "dialect": engine.dialect.name,
            "error": f"{error_type(exc)}: {redact_text(str(exc)).splitlines()[0] if str(exc) else 'timed out'}",
        }
    return {
        "status": "healthy",
        "dialect": engine.dialect.name,
        "latency_ms": round((perf_counter() - start) * 1000.0, 3),
    }


def _response(checks: dict[str, dict[str, Any]]) -> JSONResponse:
    failing = [name for name, result in checks.items() if result.get("status") != "healthy"]
    body: dict[str, Any] = {"status": "unhealthy" if failing else "healthy"}
    if failing:
        body["failing"] = failing
    body["checks"] = checks
    return JSONResponse(body, status_code=503 if failing else 200)


def make_health_router(
    *,
    redis: Any = None,
    engine: Any = None,
    prefix: str = "/health",
    timeout: float = 2.0,
    redis_name: str = "default",
) -> APIRouter:
    """A router with ``/health`` (+ ``/redis``, ``/redis/pool/stats``, ``/db`` for what is given).

    ``redis``: a :class:`RedisPoolMonitor`, a redis-py pool or client (sync or asyncio; a
    monitor named ``redis_name`` is made for it). ``engine``: a SQLAlchemy Engine or AsyncEngine.
    Each check gives up after ``timeout`` seconds.
    """
    monitor: RedisPoolMonitor | None
    if redis is None or isinstance(redis, RedisPoolMonitor):
        monitor = redis
    else:
        monitor = RedisPoolMonitor(redis, name=redis_name, health_timeout=timeout)
    router = APIRouter(prefix=prefix, tags=["health"])
    # An empty path: with a prefix (ours, or one passed to include_router) the route is exactly "/health", not "/health/".
    root = ""

    async def redis_check() -> dict[str, Any]:
        assert monitor is not None
        with _suppressed():
            return await monitor.health_check(timeout)

    async def db_check() -> dict[str, Any]:
        with _suppressed():
            return await check_database(engine, timeout)

    checks: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {}
    if monitor is not None:
        checks["redis"] = redis_check
    if engine is not None:
        checks["db"] = db_check

    @router.get(root, summary="Health of the service and its dependencies")
    async def health() -> JSONResponse:
        results = await asyncio.gather(*(check() for check in checks.values()))
        return _response(dict(zip(checks, results, strict=True)))

    if monitor is not None:

        @router.get("/redis", summary="Redis PING through the pool")
        async def health_redis() -> JSONResponse:
            return _response({"redis": await redis_check()})

        @router.get("/redis/pool/stats", summary="Redis connection pool statistics")
        async def health_redis_pool_stats() -> dict[str, Any]:
            assert monitor is not None
            return monitor.get_pool_stats()

    if engine is not None:

        @router.get("/db", summary="Database SELECT 1")
        async def health_db() -> JSONResponse:
            return _response({"db": await db_check()})

    return router


class _Dependencies:
    """The Redis monitor and database engine the module-level router checks, found on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._redis: RedisPoolMonitor | None = None
        self._engine: Any = None
        self._from_env: dict[str, Any] = {}
        self._warned = False

    def register(self, redis: Any = None, engine: Any = None) -> None:
        with self._lock:
            if redis is not None:
                self._redis = (
                    redis if isinstance(redis, RedisPoolMonitor) else RedisPoolMonitor(redis, name="default")
                )
            if engine is not None:
                self._engine = engine

    def redis(self) -> RedisPoolMonitor | None:
        if self._redis is not None:
            return self._redis
        from otel_trader.trading.redis_pool import _live_monitors

        monitors = _live_monitors()
        named = [m for m in monitors if m.name == "default"]
        if len(monitors) == 1 or len(named) == 1:
            return monitors[0] if len(monitors) == 1 else named[0]
        url = os.environ.get("REDIS_URL", "").strip()
        if not url:
            return None
        with self._lock:
            if "redis" not in self._from_env:
                import redis.asyncio

                client = redis.asyncio.from_url(url)
                self._from_env["redis"] = RedisPoolMonitor(client, name="default")
            return self._from_env["redis"]  # type: ignore[no-any-return]

    def engine(self) -> Any:
        if self._engine is not None:
            return self._engine
        url = os.environ.get("DATABASE_URL", "").strip()
        if not url:
            return None
        with self._lock:
            if "engine" not in self._from_env:
                from sqlalchemy.engine import make_url

                parsed = make_url(url)
                if parsed.get_dialect().is_async:
                    from sqlalchemy.ext.asyncio import create_async_engine

                    self._from_env["engine"] = create_async_engine(parsed, pool_pre_ping=True)
                else:
                    from sqlalchemy import create_engine

                    self._from_env["engine"] = create_engine(parsed, pool_pre_ping=True)
            return self._from_env["engine"]

    def warn_unchecked_once(self) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(
                "otel-trader: health_router checks nothing: no Redis and no database known. Set "
                "REDIS_URL / DATABASE_URL, call otel_trader.web.health.register_health_dependencies("
                "redis=..., engine=...), or use make_health_router(redis=..., engine=...)"
            )


_dependencies = _Dependencies()


def register_health_dependencies(*, redis: Any = None, engine: Any = None) -> None:
    """Tell the module-level ``health_router`` which Redis (pool, client or monitor) and engine to check."""
    _dependencies.register(redis=redis, engine=engine)


def _unconfigured(name: str, variable: str) -> dict[str, Any]:
    return {
        "status": "unconfigured",
        "error": f"no {name} known: set {variable} or call "
        f"otel_trader.web.health.register_health_dependencies({'redis' if name == 'Redis' else 'engine'}=...)",
    }


def _environment_router() -> APIRouter:
    """The four routes of :func:`make_health_router`, checking what :class:`_Dependencies` finds."""
    router = APIRouter(tags=["health"])
    timeout = 2.0

    async def redis_check() -> dict[str, Any] | None:
        monitor = _dependencies.redis()
        if monitor is None:
            return None
        with _suppressed():
            return await monitor.health_check(timeout)

    async def db_check() -> dict[str, Any] | None:
        engine = _dependencies.engine()
        if engine is None:
            return None
        with _suppressed():
            return await check_database(engine, timeout)

    @router.get("", summary="Health of the service and its dependencies")
    async def health() -> JSONResponse:
        redis_result, db_result = await asyncio.gather(redis_check(), db_check())
        checks = {n: r for n, r in (("redis", redis_result), ("db", db_result)) if r is not None}
        if not checks:
            _dependencies.warn_unchecked_once()
        return _response(checks)

    @router.get("/redis", summary="Redis PING through the pool")
    async def health_redis() -> JSONResponse:
        result = await redis_check()
        return _response({"redis": result if result is not None else _unconfigured("Redis", "REDIS_URL")})

    @router.get("/redis/pool/stats", summary="Redis connection pool statistics")
    async def health_redis_pool_stats() -> JSONResponse:
        monitor = _dependencies.redis()
        if monitor is None:
            return _response({"redis": _unconfigured("Redis", "REDIS_URL")})
        return JSONResponse(monitor.get_pool_stats())

    @router.get("/db", summary="Database SELECT 1")
    async def health_db() -> JSONResponse:
        result = await db_check()
        return _response({"db": result if result is not None else _unconfigured("database", "DATABASE_URL")})

    return router


#: For the guides' ``app.include_router(health_router, prefix="/health")``: checks the Redis and
#: database it finds (see the module docstring); :func:`make_health_router` takes them explicitly.
health_router = _environment_router()
