"""Risk and liveness state: kill switch with events, limit utilization, decision age, balances."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import otel_trader
from otel_trader import LabelValueError, trading
from otel_trader.trading import risk
from tests.trading.promsamples import families, key


@pytest.fixture(autouse=True)
def fresh_risk() -> Iterator[None]:
    risk.configure_risk()
    yield
    risk.configure_risk()


def test_halt_and_resume(telemetry, samples, caplog):
    risk.register_halt_reasons("kill_switch", "daily_loss")
    assert samples("trading_halted") == {key(reason="kill_switch"): 0, key(reason="daily_loss"): 0}
    with caplog.at_level("INFO", logger="otel_trader"), otel_trader.trace_operation("ops") as span:
        assert trading.halt("kill_switch", message="manual stop")
        assert not trading.halt("kill_switch")  # already halted: no second event
        assert trading.is_halted() and trading.is_halted("kill_switch") and not trading.is_halted("daily_loss")
        assert samples("trading_halted")[key(reason="kill_switch")] == 1
        time.sleep(0.05)
        assert trading.resume("kill_switch") == ["kill_switch"]
    assert not trading.is_halted()
    assert samples("trading_halted")[key(reason="kill_switch")] == 0
    assert samples("trading_halts_total") == {key(reason="kill_switch"): 1, key(reason="daily_loss"): 0}
    messages = [r.getMessage() for r in caplog.records if r.name == "otel_trader"]
    assert messages[0] == "otel-trader: trading halted: reason=kill_switch: manual stop"
    assert messages[1].startswith("otel-trader: trading resumed: reason=kill_switch after 0.")
    trace_id = format(span.get_span_context().trace_id, "032x")
    assert [r.trace_id for r in caplog.records if r.name == "otel_trader"] == [trace_id, trace_id]
    (ops,) = [s for s in telemetry.finished_spans() if s.name == "ops"]
    assert [e.name for e in ops.events] == ["trading.halted", "trading.resumed"]
    assert ops.events[0].attributes["trading.halt.message"] == "manual stop"
    assert [(e.reason, e.halted) for e in trading.halt_events()] == [("kill_switch", True), ("kill_switch", False)]
    assert families(telemetry.scrape())["trading_halts"] == "counter"


def test_a_halt_between_two_scrapes_still_shows(telemetry, samples):
    assert samples("trading_halts_total") == {}
    trading.halt("kill_switch")
    trading.halt("daily_loss")
    assert sorted(trading.halt_reasons()) == ["daily_loss", "kill_switch"]
    assert trading.resume() == ["kill_switch", "daily_loss"]  # every reason
    assert set(samples("trading_halted").values()) == {0}
    assert samples("trading_halts_total") == {key(reason="kill_switch"): 1, key(reason="daily_loss"): 1}


def test_risk_limits(telemetry, samples, caplog):
    daily_loss = trading.risk_limit("daily_loss", maximum=1000.0)
    exposure_now = [10_000.0]
    trading.risk_limit("exposure", maximum=50_000.0, read=lambda: exposure_now[0])
    assert daily_loss.set(250.0) == 0.25
    assert samples("risk_limit_utilization_ratio") == {key(limit="daily_loss"): 0.25, key(limit="exposure"): 0.2}
    exposure_now[0] = 45_000.0  # read at the scrape, no call needed
    with caplog.at_level("WARNING", logger="otel_trader"):
        assert samples("risk_limit_utilization_ratio")[key(limit="exposure")] == 0.9
        daily_loss.set(850.0)
        daily_loss.set(900.0)  # still near: no second warning
        daily_loss.set(1200.0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "otel-trader: risk limit 'exposure' near: 90.0 % used (45000 of 50000)",
        "otel-trader: risk limit 'daily_loss' near: 85.0 % used (850 of 1000)",
        "otel-trader: risk limit 'daily_loss' breached: 120.0 % used (1200 of 1000)",
    ]
    assert samples("risk_limit_utilization_ratio")[key(limit="daily_loss")] == 1.2
    assert not trading.is_halted()  # no halt_on_breach
    assert trading.risk_limit("daily_loss", maximum=2000.0) is daily_loss
    assert samples("risk_limit_utilization_ratio")[key(limit="daily_loss")] == 0.6
    assert "risk_limit_utilization_ratio_ratio" not in telemetry.scrape()
    with pytest.raises(ValueError, match="positive"):
        trading.risk_limit("drawdown", maximum=0)


def test_breach_can_halt_trading(telemetry, samples):
    drawdown = trading.risk_limit("drawdown", maximum=0.1, halt_on_breach=True)
    drawdown.set(0.05)
    assert not trading.is_halted()
    drawdown.set(0.12)
    assert trading.halt_reasons() == ["drawdown"]
    assert samples("trading_halted") == {key(reason="drawdown"): 1}


def test_decision_age_grows_until_the_next_decision(telemetry, samples):
    assert samples("trading_last_decision_age_seconds") == {}  # no strategy has run yet
    for _ in range(3):
        trading.decision("grid")
    first = samples("trading_last_decision_age_seconds")[key(strategy="grid")]
    time.sleep(0.2)
    second = samples("trading_last_decision_age_seconds")[key(strategy="grid")]
    assert second - first >= 0.19
    trading.decision("grid")
    assert samples("trading_last_decision_age_seconds")[key(strategy="grid")] < 0.1
    assert samples("trading_decisions_total") == {key(strategy="grid"): 4}
    assert risk.decision_age("grid") is not None and risk.decision_age("rsi") is None


def test_balances_and_exposure_are_bounded(telemetry, samples):
    risk.configure_risk(max_assets=2)
    trading.set_balance("USDT", 10_500.5)
    trading.set_balance("BTC", 0.25)
    trading.set_balance("ETH", 2.0)
    trading.set_balance("SOL", 3.0)
    trading.set_balance("ETH", 1.0)  # replaced, not added, behind __other__ too
    trading.set_exposure("BTC", -16_000.0)
    assert samples("trading_balance") == {
        key(asset="USDT"): 10_500.5,
        key(asset="BTC"): 0.25,
        key(asset="__other__"): 4.0,
    }
    assert samples("trading_exposure") == {key(asset="BTC"): -16_000.0}
    with pytest.raises(LabelValueError):
        trading.set_balance("", 1.0)
    with pytest.raises(LabelValueError):
        trading.halt("")


def test_without_a_provider(reset_otel):
    trading.halt("kill_switch")
    assert trading.is_halted()
    trading.resume()
    trading.decision()
    limit = trading.risk_limit("exposure", maximum=10.0)
    assert limit.set(5.0) == 0.5
    trading.set_balance("USDT", 1.0)
