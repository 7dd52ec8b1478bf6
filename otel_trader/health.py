"""Health endpoints for Redis and the database, as a FastAPI router.

``make_health_router(redis=pool, engine=engine)`` serves (with the default prefix ``/health``):

* ``GET /health`` — every configured dependency; 200 when all are healthy, else 503 with
  ``"failing": ["redis", ...]``.
* ``GET /health/redis`` — PING through the pool (updates ``redis_connection_latency_ms``);
  503 when Redis is down. Only present when ``redis`` is given, like the two below.
* ``GET /health/redis/pool/stats`` — :meth:`RedisPoolMonitor.get_pool_stats`, always 200.
* ``GET /health/db`` — ``SELECT 1`` on the SQLAlchemy engine (sync or async); 503 when down.

Include it without a prefix: ``app.include_router(make_health_router(...))``, or pass
``prefix=""`` and add the prefix yourself. The module-level ``health_router`` has no prefix, so
seed 000's ``app.include_router(health_router, prefix="/health")`` serves ``GET /health``.

``/health`` is excluded from traces and RED metrics by ``MonitoringMiddleware``'s default
``TELEMETRY_EXCLUDED_PATHS``; the checks themselves run with instrumentation suppressed so
the Redis PING and ``SELECT 1`` do not start root spans either. Responses never contain
connection URLs or credentials.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from .redaction import redact_text
from .redis_pool import RedisPoolMonitor
from .tracing import error_type

__all__ = ["check_database", "health_router", "make_health_router"]


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
    # An empty path: with a prefix (ours, or the one passed to include_router as seed 000
    # does) the route is exactly "/health", not "/health/".
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


#: Liveness only, for seed 000's ``app.include_router(health_router, prefix="/health")``;
#: use :func:`make_health_router` to check Redis and the database.
health_router = make_health_router(prefix="")
