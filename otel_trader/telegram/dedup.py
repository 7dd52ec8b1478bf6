"""Fingerprints and the dedup window: one message per fingerprint per window, then one follow-up.

A fingerprint is (error type, innermost location, normalised message): numbers, hex and uuids in
the message become placeholders, so ``order 123 failed`` and ``order 456 failed`` are one error.

Window rules, per fingerprint: the first occurrence is sent and opens a window. Occurrences inside
the window are counted, not sent. When the window ends with a count, one follow-up
("N more like this") is sent and a new window opens, so an error that keeps happening costs one
message per window; a window that ends quietly is forgotten, and the next occurrence is sent in
full again. ``admit`` is called from any thread (request path, logging), hence the lock; it does
a dict lookup and nothing else.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from otel_trader.telegram.report import ErrorReport

__all__ = ["Deduplicator", "FollowUp", "fingerprint", "normalise_message"]

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
# 0x-prefixed hex, or a run of ≥ 8 hex digits with at least one digit (ids, hashes, addresses).
_HEX = re.compile(r"\b0[xX][0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
#: Only the start of a message takes part: bounds the regex cost on the caller's path.
_FINGERPRINT_CHARS = 300

Fingerprint = tuple[str, str, str]


def normalise_message(message: str) -> str:
    """Replace uuids, hex ids and numbers with placeholders."""
    text = message[:_FINGERPRINT_CHARS]
    text = _UUID.sub("<uuid>", text)
    text = _HEX.sub("<hex>", text)
    return _NUMBER.sub("<n>", text)


def fingerprint(error_type: str, location: str, message: str) -> Fingerprint:
    """The dedup key of an error."""
    return (error_type, location, normalise_message(message))


@dataclass
class _Window:
    start: float
    level: int
    suppressed: int = 0
    first: ErrorReport | None = None


@dataclass(frozen=True)
class FollowUp:
    """``count`` more occurrences like ``first`` were suppressed in the window since ``since``."""

    first: ErrorReport | None
    count: int
    level: int
    since: float
    window_seconds: float


class Deduplicator:
    """Thread-safe per-fingerprint windows, bounded to ``max_entries`` fingerprints."""

    def __init__(
        self,
        window_seconds: float,
        *,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window_seconds
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # Ordered by window start (renewed windows move to the end), so expiry scans the front only.
        self._windows: OrderedDict[Fingerprint, _Window] = OrderedDict()
        self._pending: list[FollowUp] = []

    def __len__(self) -> int:
        return len(self._windows)

    def _follow_up(self, window: _Window) -> FollowUp:
        return FollowUp(window.first, window.suppressed, window.level, window.start, self.window)

    def admit(self, key: Fingerprint, level: int) -> bool:
        """True: send this occurrence now. False: it is counted for the window's follow-up."""
        if self.window <= 0:
            return True
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is not None and now - window.start >= self.window:
                # The window ended before the sweep saw it: settle it here.
                del self._windows[key]
                if window.suppressed:
                    self._pending.append(self._follow_up(window))
                    # The follow-up opened a new window; this occurrence is its first count.
                    self._windows[key] = _Window(start=now, level=level, suppressed=1, first=window.first)
                    return False
                window = None
            if window is None:
                self._windows[key] = _Window(start=now, level=level)
                if len(self._windows) > self.max_entries:
                    _, oldest = self._windows.popitem(last=False)
                    if oldest.suppressed:
                        self._pending.append(self._follow_up(oldest))
                return True
            window.suppressed += 1
            if level > window.level:
                window.level = level
            return False

    def remember(self, key: Fingerprint, report: ErrorReport) -> None:
        """Keep the sent report of a window, for the follow-up's text."""
        with self._lock:
            window = self._windows.get(key)
            if window is not None and window.first is None:
                window.first = report

    def due(self) -> list[FollowUp]:
        """Follow-ups of windows that have ended; renews windows that had suppressed occurrences."""
        if self.window <= 0:
            return []
        now = self._clock()
        with self._lock:
            out, self._pending = self._pending, []
            renewed: list[tuple[Fingerprint, _Window]] = []
            while self._windows:
                key, window = next(iter(self._windows.items()))
                if now - window.start < self.window:
                    break
                del self._windows[key]
                if window.suppressed:
                    out.append(self._follow_up(window))
                    level = window.first.level if window.first is not None else window.level
                    renewed.append((key, _Window(start=now, level=level, first=window.first)))
            for key, window in renewed:
                self._windows[key] = window
            return out

    def flush(self) -> list[FollowUp]:
        """Follow-ups of every window with suppressed occurrences, now (at shutdown)."""
        with self._lock:
            out, self._pending = self._pending, []
            out.extend(self._follow_up(w) for w in self._windows.values() if w.suppressed)
            self._windows.clear()
            return out
