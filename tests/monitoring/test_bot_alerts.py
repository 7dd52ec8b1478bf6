"""Every bot-health alert, evaluated by a real Prometheus against the demo bot, fires when its
condition is made true and is silent otherwise.

The demo's mock exchange and trading API (with its bot) run as uvicorn processes; Prometheus
scrapes the API's /metrics every second (job trader-api, via="direct", as prometheus.yml does)
and evaluates the bot-health rules every second. The rules are :func:`bot_alerts` itself with
seconds where the shipped rules have minutes (:data:`SCALED`): the same expressions, so the same
arithmetic (growing ages, `unless` halted, the halt counter's window, per-path maxima) is what
is proven here. ``for`` is evaluated by Prometheus too; promtool covers the shipped durations
(monitoring/prometheus/tests/bot_health_test.yml).

The failures are the demo's own controls: a silent market-data stream, a strategy paused without
halting, the kill switch, a risk limit's usage, lost acks, orders that never fill, a blocking
call on the event loop, fills far from the decision price.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_server import PrometheusServer

from monitoring.generate.bot_alerts import BotThresholds, bot_alerts
from tests.conftest import stop_process
from tests.demo.bot_processes import demo_env, start_service

SCALED = BotThresholds(
    stale_seconds=2, stale_for="2s", decision_seconds=2, decision_for="2s", growing="5s",
    halt_window="6s", halt_for="1s", near_for="2s", breach_for="1s",
    unacked_window="8s", unacked_for="1s", no_fill_window="8s", no_fill_orders=2, no_fill_for="2s",
    lag_window="10s", lag_p99_seconds=0.25, lag_for="2s",
    slippage_window="10s", slippage_p95_bps=100, slippage_orders=3, slippage_for="2s",
)
ALERTS = bot_alerts(SCALED)
NAMES = [a.name for a in ALERTS]
#: Seconds for the lag window to move past the API's start-up.
SCALED_LAG_WINDOW_SECONDS = 12
ALERTMANAGER = Path(__file__).resolve().parents[2] / "monitoring" / "alertmanager" / "alertmanager.yml"


@dataclass
class Bot:
    prometheus: PrometheusServer
    api: httpx.Client
    exchange: httpx.Client

    def firing(self, name: str) -> list[dict[str, str]]:
        return [r["metric"] for r in self.prometheus.query(f'ALERTS{{alertname="{name}", alertstate="firing"}}')]

    def wait_firing(self, name: str, timeout: float = 30.0) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.firing(name):
                return found
            time.sleep(0.5)
        pytest.fail(f"{name} did not fire within {timeout}s; alerts: {self.prometheus.alerts()}")

    def wait_resolved(self, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.firing(name):
            assert time.monotonic() < deadline, f"{name} still firing after {timeout}s"
            time.sleep(0.5)

    def assert_silent(self, names: list[str], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            loud = {name: self.firing(name) for name in names}
            assert not any(loud.values()), f"firing while they should not: {loud}"
            time.sleep(0.5)

    def post(self, client: httpx.Client, path: str) -> None:
        assert client.post(path).status_code == 200, path


def _rules(path: Path) -> Path:
    rules = [{"alert": a.name, "expr": a.prometheus_expr(), "for": a.for_, "labels": {"severity": a.severity},
              "annotations": {"summary": a.summary, "description": a.description}} for a in ALERTS]
    path.write_text(yaml.safe_dump({"groups": [{"name": "bot-health-scaled", "rules": rules}]}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bot]:
    tmp = tmp_path_factory.mktemp("bot-alerts")
    # No random failures of the demo's own: each alert's failure is made to happen below.
    exchange, exchange_url = start_service(
        "otel_trader.demo.exchange:create_app",
        demo_env(SERVICE_NAME="mock-exchange", MOCK_EXCHANGE_ERROR_RATE="0", MOCK_BOT_LOSE_EVERY="0",
                 MOCK_BOT_STRAY_EVERY="0"),
        tmp / "exchange.log",
    )
    api = prometheus = None
    try:
        api, api_url = start_service(
            "otel_trader.demo.api:create_app",
            demo_env(SERVICE_NAME="trader-api", EXCHANGE_URL=exchange_url, DATABASE_URL=f"sqlite:///{tmp / 'demo.db'}"),
            tmp / "api.log",
        )
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(_rules(tmp / "rules.yml"))],
            "scrape_configs": [{"job_name": "trader-api", "static_configs": [
                {"targets": [api_url.removeprefix("http://")], "labels": {"via": "direct"}}]}],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        prometheus = PrometheusServer(tmp / "prometheus.yml", tmp / "tsdb").start()
        with httpx.Client(base_url=api_url, timeout=10) as api_client, \
                httpx.Client(base_url=exchange_url, timeout=10) as exchange_client:
            yield Bot(prometheus, api_client, exchange_client)
    finally:
        if prometheus is not None:
            prometheus.stop()
        if api is not None:
            stop_process(api)
        stop_process(exchange)


@pytest.mark.timeout(400)
def test_each_alert_fires_on_its_failure_and_is_silent_otherwise(bot: Bot) -> None:
    deadline = time.monotonic() + 30
    while not bot.prometheus.query("market_data_messages_total > 100"):
        assert time.monotonic() < deadline, "no market data reached Prometheus"
        time.sleep(0.5)
    assert {r["name"] for r in bot.prometheus.rules()} == set(NAMES)
    # Past the API's start-up (its imports hold the loop for a while): a healthy bot, no alert.
    time.sleep(SCALED_LAG_WINDOW_SECONDS)
    bot.assert_silent(NAMES, 6)

    # A silent market-data stream: stale while it lasts, then fresh again.
    bot.post(bot.exchange, "/demo/stall?seconds=8")
    stale = bot.wait_firing("MarketDataStale")
    assert {(s["exchange"], s["stream"]) for s in stale} == {("mock", "BTC-USDT@trade"), ("mock", "ETH-USDT@trade")}
    assert all(s["severity"] == "critical" and s["job"] == "trader-api" for s in stale)
    assert not bot.firing("BotNotProgressing")  # the bot still decides (not to trade)
    bot.wait_resolved("MarketDataStale")

    # Halted and not deciding: halted, not stuck. Resumed and still not deciding: stuck.
    bot.post(bot.api, "/bot/halt?reason=kill_switch")
    bot.post(bot.api, "/bot/pause?seconds=14")
    halted = bot.wait_firing("TradingHalted")
    assert [(h["reason"], h["severity"]) for h in halted] == [("kill_switch", "critical")]
    bot.assert_silent(["BotNotProgressing"], 5)
    bot.post(bot.api, "/bot/resume")
    stuck = bot.wait_firing("BotNotProgressing", timeout=8)
    assert [(s["strategy"], s["severity"]) for s in stuck] == [("demo-bot", "critical")]
    bot.wait_resolved("BotNotProgressing")
    bot.wait_resolved("TradingHalted")  # the halt counter's window has passed too

    # A risk limit near, then breached, then back. Every fill costs the taker a few bps, so the
    # daily loss grows with the run's length: a new trading day keeps it out of this check.
    bot.post(bot.api, "/bot/new-day")
    bot.post(bot.api, "/bot/risk?limit=drawdown&maximum=100&used=85")
    assert [n["limit"] for n in bot.wait_firing("RiskLimitNear")] == ["drawdown"]
    assert not bot.firing("RiskLimitBreached")
    bot.post(bot.api, "/bot/risk?limit=drawdown&maximum=100&used=120")
    assert [b["limit"] for b in bot.wait_firing("RiskLimitBreached")] == ["drawdown"]
    bot.wait_resolved("RiskLimitNear")  # a breach is not also "near"
    bot.post(bot.api, "/bot/risk?limit=drawdown&maximum=100&used=10")
    bot.wait_resolved("RiskLimitBreached")

    # Orders the exchange never acknowledges.
    bot.post(bot.exchange, "/demo/lose-acks?count=3")
    assert [u["exchange"] for u in bot.wait_firing("OrdersUnacknowledged")] == ["mock"]
    bot.wait_resolved("OrdersUnacknowledged")

    # Orders acknowledged and never filled.
    bot.post(bot.exchange, "/demo/fills?enabled=false")
    assert [n["exchange"] for n in bot.wait_firing("NoFillsWhileActive")] == ["mock"]
    bot.post(bot.exchange, "/demo/fills?enabled=true")
    bot.wait_resolved("NoFillsWhileActive")

    # Fills far from the decision price.
    bot.post(bot.exchange, "/demo/slippage?bps=300")
    assert [s["exchange"] for s in bot.wait_firing("SlippageHigh")] == ["mock"]
    bot.post(bot.exchange, "/demo/slippage?bps=0")
    bot.wait_resolved("SlippageHigh")

    # A synchronous call holding the event loop, twice.
    for _ in range(2):
        bot.post(bot.api, "/bot/block?seconds=1.5")
        time.sleep(1)
    assert [lag["job"] for lag in bot.wait_firing("EventLoopLagHigh")] == ["trader-api"]
    bot.wait_resolved("EventLoopLagHigh")

    # And at the end, healthy again: nothing fires. The 300-bps fills above were real losses, so
    # the day is reopened first (what an operator does after a reviewed loss), as above.
    bot.post(bot.api, "/bot/new-day")
    bot.wait_resolved("RiskLimitNear")
    bot.wait_resolved("RiskLimitBreached")
    bot.assert_silent(NAMES, 3)



@pytest.mark.parametrize("alert", bot_alerts(), ids=lambda a: a.name)
def test_alertmanager_routes_the_critical_ones_to_telegram(alert) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool is not installed: run `make system-deps` (Debian prometheus-alertmanager)")
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER}",
         f"severity={alert.severity}", f"alertname={alert.name}", "job=trader-api"],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    expected = "telegram-email-critical" if alert.severity == "critical" else "slack-warnings"
    assert result.stdout.strip() == expected
    assert (alert.severity == "critical") == (alert.name in {
        "MarketDataStale", "BotNotProgressing", "TradingHalted", "RiskLimitBreached"})
