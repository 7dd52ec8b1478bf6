"""RedisPoolMonitor against a real redis-server: pool gauges follow checkouts, latency, operations."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio

from otel_trader import RedisPoolMonitor
from tests.trading.promsamples import key


def _pool_gauges(samples, pool: str) -> dict[str, float]:
    out = {}
    for name in ("redis_pool_max_connections", "redis_pool_active_connections", "redis_pool_utilization_percent"):
        out[name] = samples(name)[key(pool=pool)]
    return out


@pytest.mark.parametrize("pool_class", [redis.ConnectionPool, redis.BlockingConnectionPool])
def test_sync_pool_gauges_follow_checkouts(telemetry, samples, redis_server, pool_class):
    pool = pool_class.from_url(redis_server.url, max_connections=4)
    monitor = RedisPoolMonitor(pool, name="sync")
    assert _pool_gauges(samples, "sync") == {
        "redis_pool_max_connections": 4.0,
        "redis_pool_active_connections": 0.0,
        "redis_pool_utilization_percent": 0.0,
    }
    first, second = pool.get_connection(), pool.get_connection()
    try:
        assert _pool_gauges(samples, "sync")["redis_pool_active_connections"] == 2.0
        assert _pool_gauges(samples, "sync")["redis_pool_utilization_percent"] == 50.0
        assert monitor.get_pool_stats() == {
            "pool": "sync",
            "max_connections": 4,
            "active_connections": 2,
            "idle_connections": 0,
            "created_connections": 2,
            "utilization_percent": 50.0,
        }
    finally:
        pool.release(first)
        pool.release(second)
    stats = monitor.get_pool_stats()
    assert (stats["active_connections"], stats["idle_connections"]) == (0, 2)
    assert _pool_gauges(samples, "sync")["redis_pool_active_connections"] == 0.0
    monitor.close()
    pool.disconnect()


@pytest.mark.parametrize("pool_class", [redis.asyncio.ConnectionPool, redis.asyncio.BlockingConnectionPool])
def test_asyncio_pool_gauges_follow_checkouts(telemetry, samples, redis_server, pool_class):
    async def scenario() -> None:
        pool = pool_class.from_url(redis_server.url, max_connections=8)
        client = redis.asyncio.Redis(connection_pool=pool)
        monitor = RedisPoolMonitor(client, name="async")  # a client works too
        assert monitor.is_async
        held = [await pool.get_connection() for _ in range(3)]
        assert _pool_gauges(samples, "async") == {
            "redis_pool_max_connections": 8.0,
            "redis_pool_active_connections": 3.0,
            "redis_pool_utilization_percent": 37.5,
        }
        for conn in held:
            await pool.release(conn)
        assert _pool_gauges(samples, "async")["redis_pool_active_connections"] == 0.0
        health = await monitor.health_check()
        assert health["status"] == "healthy" and health["latency_ms"] > 0
        monitor.close()
        await pool.aclose()

    asyncio.run(scenario())


def test_health_check_records_latency_and_operations(telemetry, samples, redis_server):
    pool = redis.ConnectionPool.from_url(redis_server.url, max_connections=2)
    client = redis.Redis(connection_pool=pool)
    monitor = RedisPoolMonitor(pool, name="cache")
    assert key(pool="cache") not in samples("redis_connection_latency_ms")  # nothing measured yet

    health = asyncio.run(monitor.health_check())
    assert health["status"] == "healthy"
    latency = samples("redis_connection_latency_ms")[key(pool="cache")]
    assert latency == pytest.approx(health["latency_ms"], rel=0.01) and latency > 0

    with monitor.operation("SET"):
        client.set("k", "v")
    with pytest.raises(redis.ResponseError), monitor.operation("incr"):
        client.incr("k")  # "v" is not an integer
    durations = samples("redis_operation_duration_seconds_count")
    assert durations[key(pool="cache", operation="ping")] == 1.0
    assert durations[key(pool="cache", operation="set")] == 1.0
    assert durations[key(pool="cache", operation="incr")] == 1.0
    assert samples("redis_operation_errors_total") == {
        key(pool="cache", operation="incr", error_type="ResponseError"): 1.0
    }
    monitor.close()
    pool.disconnect()


@pytest.mark.timeout(60)
def test_health_check_of_a_stopped_redis(telemetry, samples, private_redis):
    server = private_redis
    pool = redis.asyncio.ConnectionPool.from_url(server.url, socket_connect_timeout=1)
    monitor = RedisPoolMonitor(pool, name="gone", health_timeout=3)

    async def scenario() -> dict:
        # One event loop: an asyncio pool's connections belong to the loop that made them.
        assert (await monitor.health_check())["status"] == "healthy"
        server.stop()
        return await monitor.health_check()

    health = asyncio.run(scenario())
    assert health["status"] == "unhealthy"
    assert "ConnectionError" in health["error"] or "TimeoutError" in health["error"]
    errors = samples("redis_operation_errors_total")
    assert sum(v for k, v in errors.items() if dict(k)["pool"] == "gone") == 1.0
    monitor.close()


def test_rejects_what_is_not_a_pool(telemetry):
    with pytest.raises(TypeError, match="not a redis-py connection pool"):
        RedisPoolMonitor(object())
