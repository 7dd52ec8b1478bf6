# Long because latency, outcomes, errors, rate-limit windows and clock skew are recorded from one
# call's result under one label policy per exchange; the venue-header parsers feed the same state.
"""Exchange call metrics: latency, outcomes, errors, rate-limit headroom, clock skew, last success.

Recorded by the ccxt integration (:mod:`otel_trader.integrations.ccxt`) for every unified call
(``create_order``, ``fetch_balance``…) and implicit endpoint call; usable directly by bots that
talk to a venue without ccxt (:func:`record_call`, :func:`observe_response_headers`).

===============================================  =========  ==========================================
Prometheus name                                  type       labels
===============================================  =========  ==========================================
``exchange_request_duration_seconds_{bucket,…}``  histogram  exchange, method, outcome; 5 ms … 30 s
``exchange_requests_total``                      counter    exchange, method, outcome
``exchange_errors_total``                        counter    exchange, method, error (exception class)
``exchange_rate_limit_used_ratio``               gauge      exchange, limit (0 … 1, 1 = limit reached)
``exchange_clock_skew_seconds``                  gauge      exchange (exchange clock − local clock)
``exchange_last_success_timestamp_seconds``      gauge      exchange (unix time)
===============================================  =========  ==========================================

``outcome`` is one of :data:`OUTCOMES`: ``success``; ``rejected`` — the venue answered and
refused the request itself (invalid order, insufficient funds, unknown symbol or order);
``error`` — the call failed (network, timeout, rate limit, maintenance, nonce/timestamp,
authentication, an unexpected response or exception); ``cancelled`` — the caller cancelled it
(``asyncio.wait_for`` timeouts, shutdown). Error-ratio alerts count ``error`` only.

Every label is bounded: ``exchange`` at 50 values, ``method`` at 200, ``error`` at 64 (ccxt's
own ~40 classes always fit), ``limit`` at 32; past that new values are ``__other__`` and counted
in ``otel_trader_label_overflow_total{label}``.

**Rate-limit headroom** is read from the response headers the venues publish: Binance
(``X-MBX-USED-WEIGHT-<n><unit>``, ``X-MBX-ORDER-COUNT-<n><unit>``, ``X-SAPI-USED-*-WEIGHT-1M``;
limits from ``exchangeInfo``'s ``rateLimits`` when it was loaded, else Binance's published
defaults), Bybit (``X-Bapi-Limit``/``-Status``/``-Reset-Timestamp``), KuCoin (``gw-ratelimit-*``),
Gate (``X-Gate-RateLimit-*``) and the generic ``RateLimit-*`` / ``X-RateLimit-*`` headers. OKX,
Kraken and Coinbase publish none on REST responses, so they have no headroom series. A value
is kept until its window ends (then it reads 0); per-endpoint limits (Bybit, Gate) report the
busiest endpoint whose window is still open.

**Clock skew** comes from ``fetch_time()`` (the midpoint of the call against the server's
millisecond clock) and otherwise from the ``Date`` response header (whole seconds, so within
±0.5 s plus half the round trip; sampled at most every 5 s). A ``fetch_time`` sample younger
than 5 minutes is preferred. Positive: the exchange's clock is ahead of ours; Binance's
``-1021`` rejects requests stamped more than 1 s ahead of it.

**Last success** is the time of the last ``success`` outcome per exchange, or of the first call
while none succeeded, so ``time() - exchange_last_success_timestamp_seconds`` is how long the
bot has gone without a successful call.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from otel_trader.trading.labels import BoundedLabel, PerProvider, count_label_overflow

__all__ = [
    "EXCHANGE_BUCKETS",
    "OUTCOMES",
    "clock_skew",
    "learn_binance_limits",
    "observe_date_header",
    "observe_response_headers",
    "rate_limit_usage",
    "record_call",
    "record_clock_skew",
    "record_rate_limit_usage",
    "reset_state",
]

#: Seconds: from a fast loopback/co-located call to a venue timing out (ccxt's default is 10 s).
EXCHANGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
OUTCOMES = ("success", "rejected", "error", "cancelled")
#: A fetch_time() skew sample is preferred over Date-header ones for this long.
FETCH_TIME_FRESH_SECONDS = 300.0
#: Date headers are parsed at most this often per exchange (parsing costs ≈ 10 µs).
DATE_SAMPLE_INTERVAL_SECONDS = 5.0
_MAX_WINDOWS = 64  # per-endpoint windows kept per (exchange, limit)
_MAX_LABEL = 64

_METER_NAME = "otel_trader.exchanges"


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.exchange = BoundedLabel("exchange", 50, count_label_overflow)
        self.method = BoundedLabel("method", 200, count_label_overflow)
        self.error = BoundedLabel("error", 64, count_label_overflow)
        self.limit = BoundedLabel("limit", 32, count_label_overflow)
        #: (exchange, limit) -> {window key -> (used ratio, monotonic expiry)}
        self.windows: dict[tuple[str, str], dict[str, tuple[float, float]]] = {}
        #: (exchange, limit name) -> limit learned from the venue (Binance exchangeInfo)
        self.limits: dict[tuple[str, str], float] = {}
        #: exchange -> {"fetch_time" | "date": (skew seconds, monotonic time of the sample)}
        self.skew: dict[str, dict[str, tuple[float, float]]] = {}
        self.date_sampled: dict[str, float] = {}
        #: exchange -> unix time of the last success (of the first call while none succeeded)
        self.last_success: dict[str, float] = {}
        self.succeeded: set[str] = set()
        #: (exchange, method, outcome) -> attribute dict, so recording allocates nothing
        self.attributes: dict[tuple[str, str, str], dict[str, str]] = {}
        self.error_attributes: dict[tuple[str, str, str], dict[str, str]] = {}


_state = _State()


def reset_state() -> None:
    """Forget label values, headroom, skew and last-success times (tests)."""
    global _state
    _state = _State()


def _label(bounded: BoundedLabel, value: str) -> str:
    value = value.strip()[:_MAX_LABEL] if isinstance(value, str) else str(value)[:_MAX_LABEL]
    return bounded(value or "unknown")


# -- instruments ------------------------------------------------------------------------------


def _observe_ratio(_options: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(value, {"exchange": e, "limit": limit})
        for (e, limit), value in rate_limit_usage().items()
    ]


def _observe_skew(_options: CallbackOptions) -> Iterable[Observation]:
    state = _state
    with state.lock:
        exchanges = list(state.skew)
    out = []
    for exchange in exchanges:
        value = clock_skew(exchange)
        if value is not None:
            out.append(Observation(value, {"exchange": exchange}))
    return out


def _observe_last_success(_options: CallbackOptions) -> Iterable[Observation]:
    with _state.lock:
        items = list(_state.last_success.items())
    return [Observation(value, {"exchange": exchange}) for exchange, value in items]


class _Instruments:
    def __init__(self, meter: metrics.Meter) -> None:
        self.duration = meter.create_histogram(
            "exchange_request_duration_seconds",
            unit="s",
            description="Duration of exchange API calls (ccxt unified and implicit methods), in seconds.",
            explicit_bucket_boundaries_advisory=EXCHANGE_BUCKETS,
        )
        self.requests = meter.create_counter(
            "exchange_requests_total",
            unit="{request}",
            description="Exchange API calls by exchange, method and outcome (success, rejected, error, cancelled).",
        )
        self.errors = meter.create_counter(
            "exchange_errors_total",
            unit="{error}",
            description="Failed exchange API calls by exchange, method and error class (ccxt exception name).",
        )
        meter.create_observable_gauge(
            "exchange_rate_limit_used_ratio",
            callbacks=[_observe_ratio],
            description="Share of an exchange rate limit in use (1 = limit reached), from the venue's response headers.",
        )
        meter.create_observable_gauge(
            "exchange_clock_skew_seconds",
            callbacks=[_observe_skew],
            unit="s",
            description="Exchange clock minus local clock, in seconds (fetch_time(), else the Date header).",
        )
        meter.create_observable_gauge(
            "exchange_last_success_timestamp_seconds",
            callbacks=[_observe_last_success],
            unit="s",
            description="Unix time of the last successful exchange call (of the first call while none succeeded).",
        )


_instruments: PerProvider[_Instruments] = PerProvider(_Instruments, _METER_NAME)


# -- calls ------------------------------------------------------------------------------------


def record_call(
    exchange: str, method: str, duration: float, outcome: str = "success", error: str | None = None
) -> None:
    """Record one exchange call: its duration, its outcome and, when it failed, the error class.

    ``outcome`` is one of :data:`OUTCOMES`; ``error`` (the exception class name) is counted in
    ``exchange_errors_total`` for every outcome but ``success``.
    """
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
    state = _state
    exchange_label = _label(state.exchange, exchange)
    method_label = _label(state.method, method)
    now = time.time()
    if outcome == "success":
        state.last_success[exchange_label] = now
        state.succeeded.add(exchange_label)
    elif exchange_label not in state.succeeded:
        state.last_success.setdefault(exchange_label, now)
    inst = _instruments.get()
    if inst is None:
        return
    key = (exchange_label, method_label, outcome)
    attributes = state.attributes.get(key)
    if attributes is None:
        attributes = {"exchange": exchange_label, "method": method_label, "outcome": outcome}
        state.attributes[key] = attributes
    inst.duration.record(duration, attributes)
    inst.requests.add(1, attributes)
    if outcome != "success":
        error_label = _label(state.error, error or "unknown")
        error_key = (exchange_label, method_label, error_label)
        error_attributes = state.error_attributes.get(error_key)
        if error_attributes is None:
            error_attributes = {"exchange": exchange_label, "method": method_label, "error": error_label}
            state.error_attributes[error_key] = error_attributes
        inst.errors.add(1, error_attributes)


# -- rate limits ------------------------------------------------------------------------------


def record_rate_limit_usage(
    exchange: str, limit: str, used: float, maximum: float, *, window: str = "", expires_in: float = 60.0
) -> None:
    """Record that ``used`` of ``maximum`` of rate limit ``limit`` is in use for ``expires_in`` seconds.

    ``window`` distinguishes per-endpoint windows of one limit; the gauge shows the busiest
    window that has not expired. Non-positive ``maximum`` values are ignored.
    """
    if maximum <= 0 or used < 0:
        return
    _instruments.get()
    state = _state
    key = (_label(state.exchange, exchange), _label(state.limit, limit))
    # A window that already ended (a reset time in the past) reads 0 at once.
    expiry = time.monotonic() + max(0.0, min(expires_in, 86_400.0))
    with state.lock:
        windows = state.windows.setdefault(key, {})
        if window not in windows and len(windows) >= _MAX_WINDOWS:
            now = time.monotonic()
            for name in [n for n, (_, until) in windows.items() if until <= now] or [next(iter(windows))]:
                del windows[name]
        windows[window] = (used / maximum, expiry)


def rate_limit_usage() -> dict[tuple[str, str], float]:
    """``{(exchange, limit): used ratio}`` as ``exchange_rate_limit_used_ratio`` reports it now."""
    now = time.monotonic()
    out: dict[tuple[str, str], float] = {}
    with _state.lock:
        for key, windows in _state.windows.items():
            live = [ratio for ratio, until in windows.values() if until > now]
            out[key] = max(live) if live else 0.0
    return out


_INTERVAL = re.compile(r"(\d+)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Binance's API families: the path's first segment, and the prefix their limits get.
_BINANCE_FAMILIES = {
    "api": "",
    "fapi": "fapi_",
    "dapi": "dapi_",
    "eapi": "eapi_",
    "papi": "papi_",
    "sapi": "sapi_",
}
#: Published limits, used until exchangeInfo's rateLimits were seen.
_BINANCE_DEFAULTS = {
    "weight_1m": 6000.0,
    "orders_10s": 100.0,
    "orders_1d": 200_000.0,
    "raw_requests_5m": 61_000.0,
    "fapi_weight_1m": 2400.0,
    "fapi_orders_1m": 1200.0,
    "fapi_orders_10s": 300.0,
    "dapi_weight_1m": 2400.0,
    "dapi_orders_1m": 1200.0,
    "sapi_ip_weight_1m": 12_000.0,
    "sapi_uid_weight_1m": 180_000.0,
}
_BINANCE_KINDS = {"REQUEST_WEIGHT": "weight", "ORDERS": "orders", "RAW_REQUESTS": "raw_requests"}


def _family(path: str) -> str:
    first = path.lstrip("/").split("/", 1)[0]
    return _BINANCE_FAMILIES.get(first, "")


def _number(value: Any) -> float | None:
    text = str(value).strip()
    match = re.match(r"-?\d+(?:\.\d+)?", text)
    return float(match.group(0)) if match else None


def observe_response_headers(exchange: str, headers: Mapping[str, Any], path: str = "") -> None:
    """Record the rate-limit usage a venue's response ``headers`` publish (see the module docstring).

    ``path`` is the request's URL path: Binance's API families (``/api``, ``/fapi``…) have
    separate limits, and per-endpoint limits are told apart by it.
    """
    found: dict[str, Any] = {}
    for name, value in headers.items():
        low = name.lower()
        if low.startswith(
            (
                "x-mbx-",
                "x-sapi-",
                "x-bapi-",
                "gw-ratelimit-",
                "x-gate-ratelimit-",
                "ratelimit-",
                "x-ratelimit-",
            )
        ):
            found[low] = value
    if not found:
        return
    now_wall = time.time()
    for low, value in found.items():
        kind = None
        if low.startswith("x-mbx-used-weight-"):
            kind, interval = "weight", low[len("x-mbx-used-weight-") :]
        elif low.startswith("x-mbx-order-count-"):
            kind, interval = "orders", low[len("x-mbx-order-count-") :]
        elif low in ("x-sapi-used-ip-weight-1m", "x-sapi-used-uid-weight-1m"):
            name = "sapi_ip_weight_1m" if "-ip-" in low else "sapi_uid_weight_1m"
            _binance(exchange, name, value, 60.0)
            continue
        if kind is None:
            continue
        match = _INTERVAL.match(interval)
        if match is None:
            continue
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        _binance(exchange, f"{_family(path)}{kind}_{interval}", value, float(seconds))
    _per_window(
        exchange,
        "endpoint",
        path,
        found.get("x-bapi-limit"),
        found.get("x-bapi-limit-status"),
        _until_epoch_ms(found.get("x-bapi-limit-reset-timestamp"), now_wall),
    )
    _per_window(
        exchange,
        "endpoint",
        path,
        found.get("x-gate-ratelimit-limit"),
        found.get("x-gate-ratelimit-requests-remain"),
        _until_epoch_ms(found.get("x-gate-ratelimit-reset-timestamp"), now_wall),
    )
    reset = _number(found.get("gw-ratelimit-reset", ""))
    _per_window(
        exchange,
        "requests",
        "",
        found.get("gw-ratelimit-limit"),
        found.get("gw-ratelimit-remaining"),
        reset / 1000.0 if reset is not None else 30.0,
    )
    for prefix in ("ratelimit-", "x-ratelimit-"):
        reset = _number(found.get(prefix + "reset", ""))
        if reset is not None and reset > 1e12:
            reset = reset / 1000.0 - now_wall
        elif reset is not None and reset > 1e9:
            reset = reset - now_wall
        _per_window(
            exchange,
            "requests",
            "",
            found.get(prefix + "limit"),
            found.get(prefix + "remaining"),
            reset if reset is not None else 60.0,
        )


def _until_epoch_ms(value: Any, now_wall: float) -> float:
    stamp = _number(value) if value is not None else None
    if stamp is None:
        return 1.0
    return stamp / 1000.0 - now_wall


def _per_window(
    exchange: str, limit: str, window: str, maximum: Any, remaining: Any, expires_in: float
) -> None:
    if maximum is None or remaining is None:
        return
    top, left = _number(maximum), _number(remaining)
    if top is None or left is None or top <= 0:
        return
    record_rate_limit_usage(exchange, limit, max(0.0, top - left), top, window=window, expires_in=expires_in)


def _binance(exchange: str, name: str, used: Any, seconds: float) -> None:
    value = _number(used)
    if value is None:
        return
    label = _label(_state.exchange, exchange)
    with _state.lock:
        learned = _state.limits.get((label, name))
    maximum = learned if learned is not None else _BINANCE_DEFAULTS.get(name)
    if maximum is not None:
        record_rate_limit_usage(exchange, name, value, maximum, expires_in=seconds)


def learn_binance_limits(exchange: str, path: str, body: str) -> None:
    """Take the rate limits from a Binance ``exchangeInfo`` response body (its ``rateLimits``).

    Only the ``rateLimits`` array is parsed (real exchangeInfo bodies are megabytes).
    """
    start = body.find('"rateLimits"')
    if start < 0:
        return
    begin = body.find("[", start)
    if begin < 0:
        return
    depth = 0
    end = -1
    for i in range(begin, min(len(body), begin + 10_000)):
        char = body[i]
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                end = i
                break
    if end < 0:
        return
    try:
        entries = json.loads(body[begin : end + 1])
    except ValueError:
        return
    family = _family(path)
    label = _label(_state.exchange, exchange)
    learned: dict[tuple[str, str], float] = {}
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict):
            continue
        kind = _BINANCE_KINDS.get(str(entry.get("rateLimitType", "")))
        interval = str(entry.get("interval", ""))[:1].lower()
        number, limit = entry.get("intervalNum"), entry.get("limit")
        if kind and interval in _UNIT_SECONDS and isinstance(number, int) and isinstance(limit, (int, float)):
            learned[(label, f"{family}{kind}_{number}{interval}")] = float(limit)
    with _state.lock:
        _state.limits.update(learned)


# -- clock skew -------------------------------------------------------------------------------


def record_clock_skew(exchange: str, skew_seconds: float, source: str = "fetch_time") -> None:
    """Record one clock-skew sample (exchange clock − local clock); ``source`` is fetch_time or date."""
    _instruments.get()
    state = _state
    label = _label(state.exchange, exchange)
    with state.lock:
        state.skew.setdefault(label, {})[source] = (float(skew_seconds), time.monotonic())


def clock_skew(exchange: str) -> float | None:
    """The skew ``exchange_clock_skew_seconds`` reports for ``exchange`` (its label), or None."""
    with _state.lock:
        samples = dict(_state.skew.get(exchange, {}))
    precise = samples.get("fetch_time")
    if precise is not None and time.monotonic() - precise[1] < FETCH_TIME_FRESH_SECONDS:
        return precise[0]
    date = samples.get("date")
    if date is not None:
        return date[0]
    return precise[0] if precise is not None else None


def observe_date_header(exchange: str, value: str, received_at: float | None = None) -> None:
    """A skew sample from an HTTP ``Date`` header received at unix time ``received_at`` (default now).

    ``Date`` has whole seconds: the server's clock was in [Date, Date + 1) when it answered, so
    the estimate is Date + 0.5 − receipt time. Sampled at most every 5 s per exchange.
    """
    now = time.monotonic()
    state = _state
    label = _label(state.exchange, exchange)
    last = state.date_sampled.get(label)
    if last is not None and now - last < DATE_SAMPLE_INTERVAL_SECONDS:
        return
    state.date_sampled[label] = now
    try:
        server = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return
    received = time.time() if received_at is None else received_at
    record_clock_skew(exchange, server + 0.5 - received, source="date")
