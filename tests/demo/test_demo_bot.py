"""The demo bot against the real mock exchange, both as uvicorn processes, through the demo's scenario.

What the summary prints has to be there: a stalled feed that reconnected, sequence gaps, a kill
switch tripped and reset, acks and fills over the WebSocket (and the lost acks and stray fills
the mock produces on purpose), slippage, and the blocked event loop with its trace id.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from otel_trader.demo.bot_report import bot_status, render_bot
from otel_trader.demo.processes import http_get
from otel_trader.demo.scenario import ScenarioLog, with_scenario
from otel_trader.demo.summary import parse
from tests.conftest import stop_process
from tests.demo.bot_processes import demo_env, start_service


@pytest.fixture(scope="module")
def bot_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, ScenarioLog]]:
    tmp = tmp_path_factory.mktemp("demo-bot")
    exchange, exchange_url = start_service(
        "otel_trader.demo.exchange:create_app",
        demo_env(SERVICE_NAME="mock-exchange", MOCK_EXCHANGE_ERROR_RATE="0"),
        tmp / "exchange.log",
    )
    api = None
    try:
        api, api_url = start_service(
            "otel_trader.demo.api:create_app",
            demo_env(SERVICE_NAME="trader-api", EXCHANGE_URL=exchange_url, DATABASE_URL=f"sqlite:///{tmp / 'demo.db'}"),
            tmp / "api.log",
        )
        log = ScenarioLog()
        asyncio.run(with_scenario(asyncio.sleep(7.0), api_url, exchange_url, log))
        yield api_url, tmp / "api.log", log
    finally:
        if api is not None:
            stop_process(api)
        stop_process(exchange)


def _metrics(api_url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    status, body = http_get(f"{api_url}/metrics", timeout=5)
    assert status == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for s in parse(body):
        out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _one(values: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    want = tuple(sorted(labels.items()))
    return sum(v for k, v in values.items() if all(item in k for item in want))


@pytest.mark.timeout(120)
def test_the_scenario_shows_in_the_bot_metrics(bot_run):
    api_url, api_log, scenario = bot_run
    assert [outcome for _, _, outcome in scenario.steps] == ["200"] * 4
    m = _metrics(api_url)
    for stream in ("BTC-USDT@trade", "ETH-USDT@trade"):
        feed = {"exchange": "mock", "stream": stream}
        assert _one(m["market_data_messages_total"], **feed) > 100
        assert _one(m["market_data_reconnects_total"], **feed) >= 1  # the 2.5 s stall
        assert _one(m["market_data_sequence_gaps_total"], **feed) >= 1
        assert _one(m["market_data_last_message_age_seconds"], **feed) < 1.0  # flowing again
        assert _one(m["market_data_lag_seconds_count"], **feed) > 10
    assert _one(m["trading_halts_total"], reason="kill_switch") == 1
    assert _one(m["trading_halted"], reason="kill_switch") == 0
    assert _one(m["trading_halted"], reason="daily_loss") == 0
    assert {dict(k)["limit"] for k in m["risk_limit_utilization_ratio"]} == {"daily_loss", "exposure", "position_size"}
    assert _one(m["trading_last_decision_age_seconds"], strategy="demo-bot") < 1.0
    assert _one(m["trading_decisions_total"], strategy="demo-bot") > 30
    assert _one(m["orders_submitted_total"], exchange="mock") >= 8
    assert _one(m["order_ack_latency_seconds_count"], exchange="mock") >= 4
    assert _one(m["order_fill_latency_seconds_count"], exchange="mock") >= 3
    assert _one(m["order_fills_total"], exchange="mock") > _one(m["order_fill_latency_seconds_count"])
    assert _one(m["order_ack_timeouts_total"], exchange="mock") >= 1  # one order in 8 is never acked
    assert _one(m["order_unknown_fills_total"], exchange="mock") >= 1  # the stray fills
    assert _one(m["order_slippage_bps_count"], exchange="mock") >= 3
    assert _one(m["trading_balance"], asset="USDT") > 0
    lag = m["asyncio_event_loop_lag_seconds_bucket"]
    assert _one(m["asyncio_event_loop_lag_seconds_count"]) - _one(lag, le="0.25") >= 1  # the 0.5 s block

    status = bot_status(api_url)
    assert status is not None
    assert [(e["reason"], e["halted"]) for e in status["halt_events"]] == [("kill_switch", True), ("kill_switch", False)]
    text = "\n".join(render_bot(parse(http_get(f"{api_url}/metrics")[1]), status))
    for needle in ("feed mock BTC-USDT@trade", "kill_switch=1", "order_ack_latency_seconds: p50", "order_slippage_bps"):
        assert needle in text

    logged = api_log.read_text()
    assert "trading halted: reason=kill_switch: from POST /bot/halt" in logged
    (blocked,) = [
        chunk for chunk in logged.split("otel-trader: ")[1:] if chunk.startswith("the asyncio event loop") and "in block" in chunk
    ]
    assert "trace_id=" in blocked and "time.sleep(seconds)" in blocked


def test_demo_bot_false_leaves_it_out(tmp_path):
    env = demo_env(DEMO_BOT="false", EXCHANGE_URL="http://127.0.0.1:9", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    code = (
        "import json; from fastapi.testclient import TestClient; from otel_trader.demo.api import create_app\n"
        "with TestClient(create_app()) as c: print(json.dumps([c.get('/bot/status').status_code,"
        " 'trading_decisions_total' in c.get('/metrics').text]))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [404, False], out.stderr


def test_daily_loss_counts_from_the_trading_days_opening_equity() -> None:
    import datetime

    from otel_trader.demo.bot import DemoBot

    bot = DemoBot("http://127.0.0.1:9")
    assert bot.daily_loss() == 0.0  # no prices yet: nothing to value
    bot.prices = {"BTC-USDT": 100.0}
    bot.balances = {"USDT": 9_000.0, "BTC": 10.0}
    bot.new_day()
    assert bot.day_open_equity == 10_000.0
    bot.prices["BTC-USDT"] = 90.0
    assert bot.daily_loss() == pytest.approx(100.0)
    bot.prices["BTC-USDT"] = 120.0
    assert bot.daily_loss() == 0.0  # up on the day is no loss
    bot.prices["BTC-USDT"] = 95.0
    bot.new_day()  # reopened: the loss so far is behind it
    assert bot.daily_loss() == 0.0
    bot.prices["BTC-USDT"] = 94.0
    assert bot.daily_loss() == pytest.approx(10.0)
    # Midnight UTC opens the next day at the equity then.
    bot.day -= datetime.timedelta(days=1)
    assert bot.daily_loss() == 0.0
    assert bot.day == datetime.datetime.now(datetime.UTC).date()
    assert bot.day_open_equity == pytest.approx(9_940.0)
