"""Health router: JSON, 503 naming the failing dependency, and no traces or RED metrics for /health."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio
import sqlalchemy
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import create_async_engine

import otel_trader
from otel_trader import make_health_router
from tests.trading.promsamples import parse_samples


def _app(**deps) -> FastAPI:
    app = FastAPI()
    otel_trader.instrument_app(app)
    app.include_router(make_health_router(**deps))

    @app.get("/ping")
    async def ping() -> dict:
        return {"pong": True}

    return app


def test_health_all_up_sqlite_and_sync_redis(telemetry, redis_server, tmp_path):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'h.db'}")
    pool = redis.ConnectionPool.from_url(redis_server.url, max_connections=5)
    with TestClient(_app(redis=pool, engine=engine)) as client:
        body = client.get("/health").json()
        assert body["status"] == "healthy" and "failing" not in body
        assert body["checks"]["redis"]["status"] == "healthy"
        assert body["checks"]["db"] == {"status": "healthy", "dialect": "sqlite", "latency_ms": body["checks"]["db"]["latency_ms"]}
        assert client.get("/health/db").status_code == 200
        assert client.get("/health/redis").json()["checks"]["redis"]["latency_ms"] > 0
        stats = client.get("/health/redis/pool/stats").json()
        assert stats["max_connections"] == 5 and stats["pool"] == "default"
    pool.disconnect()


@pytest.mark.timeout(60)
def test_health_postgres_async_engine_and_async_redis(telemetry, redis_server, postgres_url):
    engine = create_async_engine(postgres_url)
    pool = redis.asyncio.ConnectionPool.from_url(redis_server.url)
    with TestClient(_app(redis=pool, engine=engine)) as client:
        response = client.get("/health")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["db"]["dialect"] == "postgresql"
        assert client.get("/health/db").status_code == 200


@pytest.mark.timeout(60)
def test_health_503_names_redis_when_it_is_down(telemetry, private_redis, tmp_path):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'h.db'}")
    pool = redis.ConnectionPool.from_url(private_redis.url, socket_connect_timeout=1)
    with TestClient(_app(redis=pool, engine=engine, timeout=3)) as client:
        assert client.get("/health").status_code == 200
        private_redis.stop()
        response = client.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unhealthy"
        assert body["failing"] == ["redis"]
        assert body["checks"]["db"]["status"] == "healthy"
        assert "ConnectionError" in body["checks"]["redis"]["error"]
        redis_only = client.get("/health/redis")
        assert redis_only.status_code == 503 and redis_only.json()["failing"] == ["redis"]
        assert client.get("/health/db").status_code == 200
        assert client.get("/health/redis/pool/stats").status_code == 200



def test_health_is_not_traced_or_counted(telemetry, redis_server, tmp_path):
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'h.db'}")
    pool = redis.ConnectionPool.from_url(redis_server.url)
    with TestClient(_app(redis=pool, engine=engine)) as client:
        assert client.get("/ping").status_code == 200
        with engine.connect() as conn:  # proves SQLAlchemy and Redis are traced at all...
            conn.execute(sqlalchemy.text("SELECT 2"))
        redis.Redis(connection_pool=pool).ping()
        before = {s.name for s in telemetry.finished_spans()}
        assert "GET /ping" in before and any(n.startswith("SELECT") for n in before) and "PING" in before
        count_before = len(telemetry.finished_spans())
        for path in ("/health", "/health/redis", "/health/db", "/health/redis/pool/stats"):
            assert client.get(path).status_code == 200
    # ...but /health makes no server span, no PING span and no SELECT span.
    assert len(telemetry.finished_spans()) == count_before, [s.name for s in telemetry.finished_spans()[count_before:]]
    paths = {labels["path"] for name, labels, _ in parse_samples(telemetry.scrape()) if name == "http_requests_total"}
    assert paths == {"/ping"}


@pytest.mark.timeout(60)
def test_health_503_names_db_when_it_is_down(telemetry, redis_server):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://postgres:secret-pw@127.0.0.1:{port}/postgres", connect_args={"connect_timeout": 2}
    )
    pool = redis.ConnectionPool.from_url(redis_server.url)
    with TestClient(_app(redis=pool, engine=engine)) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json()["failing"] == ["db"]
        assert client.get("/health/db").status_code == 503
        assert "secret-pw" not in response.text


def test_module_health_router_included_with_a_prefix() -> None:
    """The guides write ``app.include_router(health_router, prefix="/health")``."""
    import asyncio

    import httpx
    from fastapi import FastAPI

    from otel_trader.web.health import health_router

    app = FastAPI()
    app.include_router(health_router, prefix="/health", tags=["health"])

    async def get(path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get(path)

    response = asyncio.run(get("/health"))
    assert response.status_code == 200, response.text
    assert asyncio.run(get("/health/health")).status_code == 404


# -- the guides' module-level health_router finds the app's dependencies ------------------------


@pytest.fixture
def module_router(monkeypatch):
    """The guides' shape, with the dependency lookup of a fresh process."""
    from otel_trader.web import health

    monkeypatch.setattr(health, "_dependencies", health._Dependencies())
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = FastAPI()
    app.include_router(health.health_router, prefix="/health", tags=["health"])
    return app


def test_module_router_uses_redis_url_and_database_url(module_router, monkeypatch, redis_server, tmp_path):
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'guides.db'}")
    with TestClient(module_router) as client:
        body = client.get("/health").json()
        assert body["status"] == "healthy"
        assert set(body["checks"]) == {"redis", "db"}
        assert client.get("/health/redis").json()["checks"]["redis"]["latency_ms"] > 0
        stats = client.get("/health/redis/pool/stats")
        assert stats.status_code == 200 and stats.json()["pool"] == "default"
        assert client.get("/health/db").json()["checks"]["db"]["dialect"] == "sqlite"


def test_module_router_reports_a_dead_redis(module_router, monkeypatch, private_redis, tmp_path):
    monkeypatch.setenv("REDIS_URL", private_redis.url)
    with TestClient(module_router) as client:
        assert client.get("/health/redis").status_code == 200
        private_redis.stop()
        response = client.get("/health")
        assert response.status_code == 503 and response.json()["failing"] == ["redis"]


def test_module_router_uses_registered_dependencies(module_router, redis_server, postgres_url):
    pool = redis.asyncio.ConnectionPool.from_url(redis_server.url)
    engine = create_async_engine(postgres_url)
    otel_trader.register_health_dependencies(redis=pool, engine=engine)
    with TestClient(module_router) as client:
        body = client.get("/health").json()
        assert body["status"] == "healthy", body
        assert body["checks"]["db"]["dialect"] == "postgresql"


def test_module_router_with_nothing_known_says_so(module_router, caplog):
    with TestClient(module_router) as client:
        root = client.get("/health")
        assert root.status_code == 200 and root.json()["checks"] == {}  # liveness still answers
        client.get("/health")
        for path, variable in (("/health/redis", "REDIS_URL"), ("/health/redis/pool/stats", "REDIS_URL"), ("/health/db", "DATABASE_URL")):
            response = client.get(path)
            assert response.status_code == 503, path
            assert variable in response.text and "register_health_dependencies" in response.text
    warned = [r.getMessage() for r in caplog.records if r.name == "otel_trader" and "checks nothing" in r.getMessage()]
    assert len(warned) == 1
