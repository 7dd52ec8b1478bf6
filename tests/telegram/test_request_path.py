"""Reports from the request path (MonitoringMiddleware hook) and from logging, and their cost."""

from __future__ import annotations

import asyncio
import logging
import re
import string
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import otel_trader
from otel_trader import TelegramErrorReporter, TelegramLogHandler, TelemetryManager
from otel_trader.integrations.fastapi import instrument_fastapi

from .conftest import run, wait_until
from .fake_telegram import TOKEN, FakeTelegram

pytestmark = pytest.mark.timeout(120)

SIGNOZ = "http://signoz.local:3301"


def make_app(manager: Any = None) -> FastAPI:
    """The failing test app, instrumented by ``manager`` (default: the process manager)."""
    app = FastAPI()

    @app.post("/orders/{symbol}")
    async def place_order(symbol: str) -> dict[str, str]:
        raise RuntimeError("exchange rejected the order")

    @app.get("/fail/{kind}")
    async def fail(kind: str) -> dict[str, str]:
        await asyncio.sleep(0)  # stands for the exchange/DB call a real handler awaits
        raise ValueError(f"failure of kind {kind}")

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"status": "ok"}

    if manager is None:
        return otel_trader.instrument_app(app)
    instrument_fastapi(app, manager)  # on the already-installed providers, with manager's hooks
    return app


def reporter_for(fake: FakeTelegram, **options: Any) -> TelegramErrorReporter:
    return TelegramErrorReporter(
        TOKEN, ["1001"], enabled=True, api_base_url=fake.url, signoz_url=SIGNOZ, **options
    )


def client_for(app: FastAPI, raise_errors: bool = False) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app, raise_app_exceptions=raise_errors, client=("203.0.113.7", 4242))
    return httpx.AsyncClient(transport=transport, base_url="http://trader.test")


def test_middleware_hook_reports_request_without_secrets(fake_telegram: FakeTelegram, telemetry) -> None:
    async def scenario() -> None:
        reporter = reporter_for(fake_telegram)
        # Installed before the app serves its first request (see the report: hooks added later
        # are not seen by an already-built middleware stack).
        reporter.install()
        app = make_app()
        await reporter.initialize()
        async with client_for(app) as client:
            response = await client.post(
                "/orders/BTCUSDT?api_key=SECRET-QUERY&qty=1",
                headers={
                    "Authorization": "Bearer SECRET-HEADER",
                    "X-MBX-APIKEY": "SECRET-APIKEY",
                    "Cookie": "session=SECRET-COOKIE",
                },
                json={"password": "SECRET-BODY"},
            )
        assert response.status_code == 500
        await wait_until(lambda: fake_telegram.sent())
        await reporter.shutdown()
        assert reporter.hook not in telemetry.manager.error_hooks  # shutdown uninstalls

    run(scenario())
    [call] = fake_telegram.sent()
    text, visible = call.text or "", call.visible or ""
    assert "Request: POST /orders/{symbol} → 500 · client 203.0.113.7:4242" in visible
    assert "RuntimeError: exchange rejected the order" in visible
    assert "in place_order" in visible
    [server_span] = [s for s in telemetry.finished_spans() if s.kind.name == "SERVER"]
    trace_id = format(server_span.context.trace_id, "032x")
    assert f'<a href="{SIGNOZ}/trace/{trace_id}">{trace_id}</a>' in text
    for secret in ("SECRET-QUERY", "SECRET-HEADER", "SECRET-APIKEY", "SECRET-COOKIE", "SECRET-BODY", "api_key", "BTCUSDT"):
        assert secret not in text


def test_exception_reported_by_hook_and_then_logged_is_sent_once(fake_telegram: FakeTelegram, telemetry) -> None:
    async def scenario() -> dict[str, int]:
        reporter = reporter_for(fake_telegram)
        reporter.install()
        app = make_app()
        await reporter.initialize()
        handler = TelegramLogHandler(reporter)
        server_log = logging.getLogger("uvicorn.error")
        server_log.addHandler(handler)
        try:
            async with client_for(app, raise_errors=True) as client:
                with pytest.raises(RuntimeError) as info:
                    await client.post("/orders/ETHUSDT")
            # What uvicorn does with an exception that escapes the app.
            server_log.error("Exception in ASGI application", exc_info=info.value)
        finally:
            server_log.removeHandler(handler)
        await wait_until(lambda: fake_telegram.sent())
        await reporter.shutdown()
        return reporter.stats

    stats = run(scenario())
    assert len(fake_telegram.sent()) == 1
    assert stats == {"sent": 1, "failed": 0, "suppressed": 0, "dropped": 0}


def test_logging_handler_reports_errors_and_ignores_its_own(fake_telegram: FakeTelegram) -> None:
    async def scenario() -> TelegramErrorReporter:
        reporter = reporter_for(fake_telegram)
        await reporter.initialize()  # becomes the process reporter: the handler finds it
        handler = TelegramLogHandler(level=logging.ERROR)
        root = logging.getLogger()
        root.addHandler(handler)
        log = logging.getLogger("bot.orders")
        try:
            try:
                {}["missing"]
            except KeyError:
                log.error("order %s failed", 7, exc_info=True)
            log.critical("kill switch engaged for %s", "BTCUSDT")
            log.warning("only a warning")
            logging.getLogger("otel_trader.telegram").error("the reporter's own trouble")
            logging.getLogger("httpx").error("HTTP Request failed")
            await wait_until(lambda: len(fake_telegram.sent()) >= 2)
            await reporter.flush(2)
        finally:
            root.removeHandler(handler)
        await reporter.shutdown()
        return reporter

    reporter = run(scenario())
    texts = [c.visible or "" for c in fake_telegram.sent()]
    assert len(texts) == 2, texts
    error, critical = sorted(texts, key=lambda t: "CRITICAL" in t)
    assert "Log: order 7 failed" in error and "KeyError: 'missing'" in error
    assert "logger: bot.orders" in error
    assert "CRITICAL" in critical and "kill switch engaged for BTCUSDT" in critical
    assert not any("only a warning" in t or "own trouble" in t or "HTTP Request failed" in t for t in texts)
    assert reporter.stats["sent"] == 2


def test_logging_handler_does_not_recurse_on_reporter_warnings(
    fake_telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)

    async def scenario() -> TelegramErrorReporter:
        reporter = TelegramErrorReporter(TOKEN, ["1001", "424242"], enabled=True, api_base_url=fake_telegram.url)
        await reporter.initialize()
        handler = TelegramLogHandler(reporter, level=logging.DEBUG)  # even at DEBUG: nothing of ours
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            logging.getLogger("bot").error("boom")
            await wait_until(lambda: reporter.stats["sent"] == 1)
            await reporter.flush(2)
        finally:
            root.removeHandler(handler)
        await reporter.shutdown()
        return reporter

    reporter = run(scenario())
    assert "424242" in caplog.text  # the bad-chat warning was logged …
    assert len(fake_telegram.sent()) == 1  # … and not reported
    assert reporter.stats == {"sent": 1, "failed": 0, "suppressed": 0, "dropped": 0}


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(len(ordered) * 0.99) - 1]


def test_request_path_latency_unaffected_by_reporting(fake_telegram: FakeTelegram, telemetry) -> None:
    import time

    # A slow Telegram: were sending on the request path, every failed request would take 20 ms.
    fake_telegram.delay = 0.02
    kinds = ["".join(string.ascii_lowercase[(i // 26**j) % 26] for j in range(3)) for i in range(200)]

    async def scenario() -> tuple[float, float, int, dict[str, int]]:
        reporter = reporter_for(fake_telegram)
        # Reporting off: an app under a second manager, same config and providers, no hooks.
        # (Hooks are per manager; every app of the process manager shares its hook list.)
        off_manager = TelemetryManager(telemetry.manager.config)
        app_off, app_on = make_app(off_manager), make_app()
        async with client_for(app_off) as off, client_for(app_on) as on:
            await off.get("/ok")
            reporter.install()
            await reporter.initialize()
            await on.get("/ok")
            for client in (off, on):  # warm-up
                for i in range(50):
                    await client.get(f"/fail/warm{kinds[i][:1]}")
            latencies: dict[str, list[float]] = {"off": [], "on": []}
            for block in range(8):
                for name, client in (("off", off), ("on", on)) if block % 2 == 0 else (("on", on), ("off", off)):
                    for i in range(150):
                        kind = kinds[(block * 150 + i) % len(kinds)]
                        start = time.perf_counter()
                        response = await client.get(f"/fail/{kind}")
                        latencies[name].append(time.perf_counter() - start)
                        assert response.status_code == 500
                        # Between requests a server's loop turns (socket reads); so does this one.
                        await asyncio.sleep(0)
            sent_during = len(fake_telegram.sent())
            await reporter.shutdown(timeout=10)
        return _p99(latencies["off"]), _p99(latencies["on"]), sent_during, reporter.stats

    p99_off, p99_on, sent_during, stats = run(scenario(), timeout=100)
    print(
        f"\nrequest path p99: reporting off {p99_off * 1000:.2f} ms, on {p99_on * 1000:.2f} ms "
        f"(1200 failing requests each; {sent_during} messages sent meanwhile, stats {stats})"
    )
    assert sent_during >= 20, "the sender was not busy while requests ran; the comparison would be empty"
    assert stats["sent"] + stats["suppressed"] + stats["failed"] + stats["dropped"] == 1200 + 50
    assert p99_on <= 1.5 * p99_off + 0.001


def test_hook_counts_what_a_full_queue_drops(fake_telegram: FakeTelegram, telemetry) -> None:
    async def scenario() -> dict[str, int]:
        reporter = reporter_for(fake_telegram, queue_size=5)
        reporter.install()
        app = make_app()
        await reporter.initialize()
        info = otel_trader.RequestInfo("GET", "/x", "/x", 500, None, None)
        for i in range(20):  # no await in between: the sender cannot drain
            reporter.hook(ValueError(f"distinct {string.ascii_letters[i]}"), info)
        await reporter.shutdown()
        del app
        return reporter.stats

    stats = run(scenario())
    assert stats["dropped"] == 15 and stats["sent"] == 5
    assert re.search(r"otel_trader_error_reports_dropped_total\{[^}]*\} 15\.0", telemetry.scrape())


def test_reports_from_other_threads_reach_the_loop(fake_telegram: FakeTelegram) -> None:
    import threading

    async def scenario() -> TelegramErrorReporter:
        reporter = reporter_for(fake_telegram)
        await reporter.initialize()
        handler = TelegramLogHandler(reporter)
        log = logging.getLogger("bot.worker")
        log.addHandler(handler)
        try:
            def work(n: int) -> None:
                try:
                    raise OSError(f"worker thread failure {string.ascii_lowercase[n]}")
                except OSError:
                    log.exception("background job failed")

            threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(5)
            await wait_until(lambda: len(fake_telegram.sent()) == 4, timeout=5)
        finally:
            log.removeHandler(handler)
        await reporter.shutdown()
        return reporter

    reporter = run(scenario())
    assert reporter.stats["sent"] == 4
    assert all("OSError: worker thread failure" in (c.visible or "") for c in fake_telegram.sent())
