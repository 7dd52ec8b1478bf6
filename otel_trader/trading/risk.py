# Long because kill switch, risk limits, decisions, balances and exposure share one lock-guarded
# state, read together by the observable instruments at export time.
"""Risk and liveness state: kill switch, risk-limit utilization, decision age, balances and exposure.

==============================================  =========  ===================================================
Prometheus name                                 type       meaning
==============================================  =========  ===================================================
``trading_halted{reason}``                      gauge      1 while trading is halted for ``reason``, else 0
``trading_halts_total{reason}``                 counter    times trading was halted for ``reason`` (a halt and
                                                           reset between two scrapes still shows here)
``risk_limit_utilization_ratio{limit}``         gauge      used / maximum of each registered limit; ≥ 1 is a breach
``trading_last_decision_age_seconds{strategy}`` gauge      seconds since the strategy was last evaluated,
                                                           computed at export time (a stuck bot *grows*)
``trading_decisions_total{strategy}``           counter    strategy evaluations
``trading_balance{asset}``                      gauge      balance per asset, in the asset's units
``trading_exposure{asset}``                     gauge      exposure per asset, in quote currency
==============================================  =========  ===================================================

Labels are bounded free text: :data:`DEFAULT_MAX_REASONS` halt reasons, :data:`DEFAULT_MAX_LIMITS`
limits, :data:`DEFAULT_MAX_ASSETS` assets, the trading module's 50 strategies; then ``__other__``.

Usage::

    trading.halt("kill_switch", message="manual stop from the ops channel")   # logged, counted
    if trading.is_halted(): ...
    trading.resume("kill_switch")

    daily_loss = trading.risk_limit("daily_loss", maximum=1000.0)
    daily_loss.set(max(0.0, -pnl_today))                # usage counted against the limit, >= 0
    trading.risk_limit("exposure", maximum=50_000, read=lambda: abs(book.net_exposure()))  # read at export

    trading.decision("grid")                            # every evaluation of the strategy
    trading.set_balance("USDT", 10_500.0)
    trading.set_exposure("BTC", 32_000.0)

Every halt and resume is a log record (WARNING / INFO, with the current trace id) and an event
on the current span. Series appear once a reason, limit, strategy or asset is first used;
:func:`register_halt_reasons` makes ``trading_halted{reason}`` report 0 before any halt, so a
dashboard shows "not halted" instead of "no data". The decision age of a strategy is counted
from its first :func:`decision` call.

None of these calls touch the OpenTelemetry API on the way: they update process state read by
observable instruments at export time (``decision()`` costs ≈ 0.2 µs), and work the same
without an installed MeterProvider.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation

from otel_trader.trading.labels import OVERFLOW_VALUE, BoundedLabel, PerProvider, count_label_overflow

__all__ = [
    "DEFAULT_MAX_ASSETS",
    "DEFAULT_MAX_LIMITS",
    "DEFAULT_MAX_REASONS",
    "NEAR_LIMIT_RATIO",
    "HaltEvent",
    "RiskLimit",
    "decision",
    "halt",
    "halt_events",
    "halt_reasons",
    "is_halted",
    "register_halt_reasons",
    "reset_risk_state",
    "resume",
    "risk_limit",
    "risk_limits",
    "set_balance",
    "set_exposure",
]

DEFAULT_MAX_REASONS = 20
DEFAULT_MAX_LIMITS = 50
DEFAULT_MAX_ASSETS = 100
#: ``RiskLimitNear`` fires from this utilization; :meth:`RiskLimit.set` logs the crossing.
NEAR_LIMIT_RATIO = 0.8
#: Halt/resume events kept for :func:`halt_events`.
MAX_HALT_EVENTS = 100
#: Overflowed assets kept one by one behind ``__other__`` (their sum is reported).
MAX_OVERFLOW_ASSETS = 1000

_METER_NAME = "otel_trader.trading"

logger = logging.getLogger("otel_trader")

_monotonic = time.monotonic


@dataclass(frozen=True)
class HaltEvent:
    """One change of the kill switch: ``halted`` True for a halt, False for a resume."""

    reason: str
    halted: bool
    at: float  # time.time()
    message: str | None = None


class RiskLimit:
    """A registered risk limit: its utilization is ``used / maximum`` (see :func:`risk_limit`)."""

    __slots__ = ("name", "label", "maximum", "used", "halt_on_breach", "_read", "_level")

    def __init__(
        self, name: str, label: str, maximum: float, read: Callable[[], float] | None, halt: bool
    ) -> None:
        self.name = name
        self.label = label
        self.maximum = _positive(maximum)
        self.used = 0.0
        self.halt_on_breach = halt
        self._read = read
        self._level = 0  # 0 below NEAR_LIMIT_RATIO, 1 near, 2 breached: logs each crossing once

    @property
    def utilization(self) -> float:
        """``used / maximum`` now (the ``read`` callback's value when one was given)."""
        if self._read is not None:
            try:
                self.used = float(self._read())
            except Exception:  # a failing callback must not break the export
                logger.debug("otel-trader: risk limit %r read callback failed", self.name, exc_info=True)
        return self.used / self.maximum

    def set(self, used: float) -> float:
        """Record how much of the limit is used (a non-negative amount, e.g. today's loss as a positive
        number); returns the utilization. Crossing 80 % and 100 % is logged once per crossing, and a
        breach halts trading with this limit's name as the reason when ``halt_on_breach`` was given."""
        self.used = float(used)
        ratio = self.used / self.maximum
        self._crossed(ratio)
        return ratio

    def _crossed(self, ratio: float) -> None:
        level = 2 if ratio >= 1.0 else 1 if ratio >= NEAR_LIMIT_RATIO else 0
        previous, self._level = self._level, level
        if level > previous:
            logger.warning(
                "otel-trader: risk limit %r %s: %.1f %% used (%g of %g)",
                self.name,
                "breached" if level == 2 else "near",
                100 * ratio,
                self.used,
                self.maximum,
            )
            if level == 2 and self.halt_on_breach:
                halt(self.name, message=f"risk limit {self.name} breached ({100 * ratio:.1f} %)")

    def __repr__(self) -> str:
        return f"RiskLimit({self.name!r}, maximum={self.maximum:g}, used={self.used:g})"


def _positive(value: float) -> float:
    value = float(value)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"a risk limit's maximum must be a positive finite number, got {value!r}")
    return value


class _Decision:
    __slots__ = ("label", "last", "count")

    def __init__(self, label: str) -> None:
        self.label = label
        self.last = _monotonic()
        self.count = 0


class _RiskState:
    def __init__(self, max_reasons: int, max_limits: int, max_assets: int) -> None:
        self.lock = threading.Lock()
        self.reason = BoundedLabel("reason", max_reasons, count_label_overflow)
        self.limit = BoundedLabel("limit", max_limits, count_label_overflow)
        self.asset = BoundedLabel("asset", max_assets, count_label_overflow)
        #: reason label -> raw reasons halted under it (several behind __other__)
        self.halted: dict[str, set[str]] = {}
        self.halts: dict[str, int] = {}
        self.since: dict[str, float] = {}
        self.events: list[HaltEvent] = []
        self.limits: dict[str, RiskLimit] = {}
        #: raw strategy -> its decision record (labels bounded by the trading strategy label)
        self.decisions: dict[str, _Decision] = {}
        #: "balance"/"exposure" -> asset label -> value; overflowed raw assets kept apart
        self.values: dict[str, dict[str, float]] = {"balance": {}, "exposure": {}}
        self.overflow_values: dict[str, dict[str, float]] = {"balance": {}, "exposure": {}}


_risk = _RiskState(DEFAULT_MAX_REASONS, DEFAULT_MAX_LIMITS, DEFAULT_MAX_ASSETS)


def reset_risk_state() -> None:
    """Forget halts, limits, decisions, balances and exposure (tests; a forked child)."""
    global _risk
    _risk = _RiskState(_risk.reason.max_values, _risk.limit.max_values, _risk.asset.max_values)


def configure_risk(
    *,
    max_reasons: int = DEFAULT_MAX_REASONS,
    max_limits: int = DEFAULT_MAX_LIMITS,
    max_assets: int = DEFAULT_MAX_ASSETS,
) -> None:
    """Set the label limits (start-up); forgets all risk state."""
    global _risk
    _risk = _RiskState(max_reasons, max_limits, max_assets)


# -- kill switch ------------------------------------------------------------------------------


def _event(name: str, attributes: dict[str, Any]) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, attributes)


def register_halt_reasons(*reasons: str) -> None:
    """Report ``trading_halted{reason}`` = 0 for these reasons from now on (before any halt)."""
    _instruments.get()
    for reason in reasons:
        label = _risk.reason(reason)
        with _risk.lock:
            _risk.halted.setdefault(label, set())
            _risk.halts.setdefault(label, 0)


def halt(reason: str = "kill_switch", *, message: str | None = None) -> bool:
    """Halt trading for ``reason``; returns False when it was already halted for it (nothing logged).

    Sets ``trading_halted{reason}`` to 1, adds one to ``trading_halts_total{reason}``, logs a
    warning and adds a ``trading.halted`` event to the current span.
    """
    _instruments.get()
    label = _risk.reason(reason)
    with _risk.lock:
        active = _risk.halted.setdefault(label, set())
        if reason in active:
            return False
        active.add(reason)
        _risk.halts[label] = _risk.halts.get(label, 0) + 1
        _risk.since[reason] = _monotonic()
        _remember(HaltEvent(reason, True, time.time(), message))
    logger.warning("otel-trader: trading halted: reason=%s%s", reason, f": {message}" if message else "")
    _event(
        "trading.halted",
        {"trading.halt.reason": reason, **({"trading.halt.message": message} if message else {})},
    )
    return True


def resume(reason: str | None = None, *, message: str | None = None) -> list[str]:
    """Lift the halt for ``reason`` (None: every reason); returns the reasons lifted.

    Each is logged (INFO, with how long trading was halted) and added as a ``trading.resumed``
    event to the current span.
    """
    lifted: list[tuple[str, float]] = []
    now = _monotonic()
    with _risk.lock:
        for active in _risk.halted.values():
            for raw in list(active):
                if reason is None or raw == reason:
                    active.discard(raw)
                    lifted.append((raw, now - _risk.since.pop(raw, now)))
                    _remember(HaltEvent(raw, False, time.time(), message))
    for raw, duration in lifted:
        logger.info(
            "otel-trader: trading resumed: reason=%s after %.1f s%s",
            raw,
            duration,
            f": {message}" if message else "",
        )
        _event("trading.resumed", {"trading.halt.reason": raw, "trading.halt.duration_s": duration})
    return [raw for raw, _ in lifted]


def _remember(event: HaltEvent) -> None:
    _risk.events.append(event)
    if len(_risk.events) > MAX_HALT_EVENTS:
        del _risk.events[0]


def is_halted(reason: str | None = None) -> bool:
    """Whether trading is halted (for ``reason``, or for any reason)."""
    with _risk.lock:
        return any(
            reason in active if reason is not None else bool(active) for active in _risk.halted.values()
        )


def halt_reasons() -> list[str]:
    """The reasons trading is halted for now."""
    with _risk.lock:
        return sorted(r for active in _risk.halted.values() for r in active)


def halt_events() -> list[HaltEvent]:
    """The last :data:`MAX_HALT_EVENTS` halts and resumes, oldest first."""
    with _risk.lock:
        return list(_risk.events)


# -- risk limits ------------------------------------------------------------------------------


def risk_limit(
    name: str,
    *,
    maximum: float,
    read: Callable[[], float] | None = None,
    halt_on_breach: bool = False,
) -> RiskLimit:
    """Register (or update) the risk limit ``name``: ``risk_limit_utilization_ratio{limit=name}``.

    Feed its usage with :meth:`RiskLimit.set`, or give ``read``, a callable returning the usage,
    read at each export. ``maximum`` must be positive. Calling again with the same name updates
    ``maximum`` (and ``read`` when given) and returns the same object.
    """
    _instruments.get()
    label = _risk.limit(name)
    with _risk.lock:
        existing = _risk.limits.get(name)
        if existing is not None:
            existing.maximum = _positive(maximum)
            existing.halt_on_breach = halt_on_breach
            if read is not None:
                existing._read = read
            return existing
        if label == OVERFLOW_VALUE and any(lim.label == OVERFLOW_VALUE for lim in _risk.limits.values()):
            # Bounded: one limit stands for everything past the label limit.
            other = next(lim for lim in _risk.limits.values() if lim.label == OVERFLOW_VALUE)
            return other
        made = RiskLimit(name, label, maximum, read, halt_on_breach)
        _risk.limits[name] = made
        return made


def risk_limits() -> dict[str, RiskLimit]:
    """The registered limits by name."""
    with _risk.lock:
        return dict(_risk.limits)


# -- decisions --------------------------------------------------------------------------------


def decision(strategy: str = "default") -> None:
    """The strategy was just evaluated (whatever it decided): resets its decision age, counts one."""
    entry = _risk.decisions.get(strategy)
    if entry is None:
        entry = _new_decision(strategy)
    entry.last = _monotonic()
    entry.count += 1


def _new_decision(strategy: str) -> _Decision:
    from otel_trader.trading import orders

    _instruments.get()
    label = orders.state().strategy(strategy)
    with _risk.lock:
        entry = _risk.decisions.get(strategy)
        if entry is None:
            if label == OVERFLOW_VALUE:
                shared = next((d for d in _risk.decisions.values() if d.label == OVERFLOW_VALUE), None)
                entry = shared or _Decision(label)
            else:
                entry = _Decision(label)
            # Overflowed strategies share one record; its key set stays bounded by the admitted
            # labels plus the overflowed names actually seen, capped below.
            if label != OVERFLOW_VALUE or len(_risk.decisions) < 10 * orders.state().strategy.max_values:
                _risk.decisions[strategy] = entry
    return entry


def decision_age(strategy: str = "default") -> float | None:
    """Seconds since ``strategy`` was last evaluated; None before its first :func:`decision`."""
    entry = _risk.decisions.get(strategy)
    return None if entry is None else _monotonic() - entry.last


# -- balances and exposure --------------------------------------------------------------------


def _set_value(kind: str, asset: str, value: float) -> None:
    _instruments.get()
    label = _risk.asset(asset)
    amount = float(value)
    with _risk.lock:
        if label != OVERFLOW_VALUE:
            _risk.values[kind][label] = amount
            return
        kept = _risk.overflow_values[kind]
        if asset in kept or len(kept) < MAX_OVERFLOW_ASSETS:
            kept[asset] = amount
        _risk.values[kind][OVERFLOW_VALUE] = sum(kept.values())


def set_balance(asset: str, amount: float) -> None:
    """Set ``trading_balance{asset}`` (the asset's units)."""
    _set_value("balance", asset, amount)


def set_exposure(asset: str, amount: float) -> None:
    """Set ``trading_exposure{asset}`` (quote currency; signed: negative for a short)."""
    _set_value("exposure", asset, amount)


# -- instruments ------------------------------------------------------------------------------


def _observe_halted(_options: CallbackOptions) -> Iterable[Observation]:
    with _risk.lock:
        items = [(label, 1 if active else 0) for label, active in _risk.halted.items()]
    return [Observation(v, {"reason": label}) for label, v in items]


def _observe_halts(_options: CallbackOptions) -> Iterable[Observation]:
    with _risk.lock:
        items = list(_risk.halts.items())
    return [Observation(v, {"reason": label}) for label, v in items]


def _observe_limits(_options: CallbackOptions) -> Iterable[Observation]:
    with _risk.lock:
        limits = list(_risk.limits.values())
    out = []
    for lim in limits:
        ratio = lim.utilization
        lim._crossed(ratio)
        out.append(Observation(ratio, {"limit": lim.label}))
    return out


def _decision_entries() -> list[_Decision]:
    with _risk.lock:
        seen: dict[int, _Decision] = {id(d): d for d in _risk.decisions.values()}
    return list(seen.values())


def _observe_decision_age(_options: CallbackOptions) -> Iterable[Observation]:
    now = _monotonic()
    return [Observation(now - d.last, {"strategy": d.label}) for d in _decision_entries()]


def _observe_decisions(_options: CallbackOptions) -> Iterable[Observation]:
    return [Observation(d.count, {"strategy": d.label}) for d in _decision_entries()]


def _observe_values(kind: str) -> Any:
    def callback(_options: CallbackOptions) -> Iterable[Observation]:
        with _risk.lock:
            items = list(_risk.values[kind].items())
        return [Observation(v, {"asset": label}) for label, v in items]

    return callback


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        meter.create_observable_gauge(
            "trading_halted",
            callbacks=[_observe_halted],
            description="1 while trading is halted for the reason (kill switch), else 0.",
        )
        meter.create_observable_counter(
            "trading_halts_total",
            callbacks=[_observe_halts],
            unit="{halt}",
            description="Times trading was halted, by reason.",
        )
        meter.create_observable_gauge(
            "risk_limit_utilization_ratio",
            callbacks=[_observe_limits],
            unit="1",
            description="Used / maximum of each registered risk limit; 1 or more is a breach.",
        )
        meter.create_observable_gauge(
            "trading_last_decision_age_seconds",
            callbacks=[_observe_decision_age],
            unit="s",
            description="Seconds since the strategy was last evaluated, computed when metrics are read.",
        )
        meter.create_observable_counter(
            "trading_decisions_total",
            callbacks=[_observe_decisions],
            unit="{decision}",
            description="Strategy evaluations, by strategy.",
        )
        # No unit: an asset code as unit would be appended to the Prometheus name.
        meter.create_observable_gauge(
            "trading_balance",
            callbacks=[_observe_values("balance")],
            description="Balance per asset, in the asset's units.",
        )
        meter.create_observable_gauge(
            "trading_exposure",
            callbacks=[_observe_values("exposure")],
            description="Exposure per asset, in quote currency (negative for a short).",
        )


_instruments: PerProvider[_Instruments] = PerProvider(_Instruments, _METER_NAME)


def _after_fork_in_child() -> None:
    # Halt state, limits and decisions describe the bot, which the child still is; only the
    # halt count restarts (the parent's would be counted again under the child's identity).
    _risk.lock = threading.Lock()
    for label in _risk.halts:
        _risk.halts[label] = 0
    for d in _risk.decisions.values():
        d.count = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
