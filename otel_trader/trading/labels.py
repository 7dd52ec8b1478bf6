"""Label values checked and bounded, and instruments built once per MeterProvider.

The one label and instrument-cache policy of the trading domain: orders, feeds, the order
lifecycle, risk state, exchanges, Redis pools and WebSocket clients all check their fixed label
sets with :func:`choice`, bound their free-text labels with :class:`BoundedLabel` (past the limit a
value is recorded as ``__other__`` and ``otel_trader_label_overflow_total{label}`` counts it) and
build their instruments through :class:`PerProvider`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from opentelemetry import metrics

__all__ = [
    "MAX_LABEL_LENGTH",
    "OVERFLOW_VALUE",
    "BoundedLabel",
    "LabelValueError",
    "PerProvider",
    "choice",
    "count_label_overflow",
    "is_proxy",
]

OVERFLOW_VALUE = "__other__"
#: Longer free-text label values are a bug (an id or a message in a label), not a symbol.
MAX_LABEL_LENGTH = 64


class LabelValueError(ValueError):
    """A metric label got a value it does not accept; names the label, the value and what is allowed."""

    def __init__(self, label: str, value: Any, allowed: Iterable[str] | str) -> None:
        self.label = label
        self.value = value
        self.allowed = allowed if isinstance(allowed, str) else tuple(allowed)
        expected = self.allowed if isinstance(self.allowed, str) else "one of " + ", ".join(self.allowed)
        super().__init__(f"label {label!r} does not accept {value!r}: expected {expected}")


def choice(label: str, value: Any, allowed: tuple[str, ...]) -> str:
    """``value`` lower-cased if it is one of ``allowed``; else :class:`LabelValueError`."""
    normalised = value.strip().lower() if isinstance(value, str) else value
    if normalised not in allowed:
        raise LabelValueError(label, value, allowed)
    return str(normalised)


class BoundedLabel:
    """Free-text label values, at most ``max_values`` distinct ones; later ones become ``__other__``.

    Values seen first keep their own series for the life of the process, so a symbol's series
    never flips to ``__other__`` once it exists.
    """

    def __init__(self, name: str, max_values: int, on_overflow: Callable[[str], None] | None = None) -> None:
        if max_values < 1:
            raise ValueError(f"max_values for label {name!r} must be at least 1, got {max_values}")
        self.name = name
        self.max_values = max_values
        self._on_overflow = on_overflow
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: Any) -> str:
        """The label value to record for ``value`` (itself, or ``__other__`` past the limit)."""
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_LABEL_LENGTH:
            raise LabelValueError(
                self.name, value, f"a non-empty string of at most {MAX_LABEL_LENGTH} characters"
            )
        if value in self._seen:
            return value
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self.max_values:
                self._seen.add(value)
                return value
        if self._on_overflow is not None:
            self._on_overflow(self.name)
        return OVERFLOW_VALUE

    def __len__(self) -> int:
        return len(self._seen)


T = TypeVar("T")


class PerProvider(Generic[T]):
    """Instruments built once per installed MeterProvider.

    Returns ``None`` while only the API's proxy provider exists: instruments made on the proxy
    would later be bound to the real provider *and* be made again there, duplicating the
    observable callbacks. State lives outside the instruments, so nothing is lost when a new
    provider is installed.
    """

    def __init__(self, build: Callable[[metrics.Meter], T], meter_name: str) -> None:
        self._build = build
        self._meter_name = meter_name
        self._cached: tuple[object, T] | None = None
        self._lock = threading.Lock()

    def get(self) -> T | None:
        """The instruments for the current global MeterProvider, or None without one."""
        provider = metrics.get_meter_provider()
        cached = self._cached
        if cached is not None and cached[0] is provider:
            return cached[1]
        if is_proxy(provider):
            return None
        with self._lock:
            cached = self._cached
            if cached is None or cached[0] is not provider:
                cached = (provider, self._build(provider.get_meter(self._meter_name)))
                self._cached = cached
        return cached[1]


def is_proxy(provider: object) -> bool:
    """Whether ``provider`` is the API's placeholder (no SDK MeterProvider installed yet)."""
    return type(provider).__name__ == "_ProxyMeterProvider"


def count_label_overflow(label: str) -> None:
    """Add one to ``otel_trader_label_overflow_total{label}`` (a value was recorded as ``__other__``)."""
    counter = _overflow.get()
    if counter is not None:
        counter.add(1, {"label": label})


def _overflow_counter(meter: metrics.Meter) -> metrics.Counter:
    return meter.create_counter(
        "otel_trader_label_overflow_total",
        unit="{recording}",
        description="Recordings whose label value was replaced by __other__ (too many distinct values).",
    )


# The trading meter's scope: the counter has always been part of the trading metrics.
_overflow: PerProvider[metrics.Counter] = PerProvider(_overflow_counter, "otel_trader.trading")
