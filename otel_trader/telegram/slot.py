"""The process reporter's slot: which reporter :func:`~.process.get_error_reporter` returns.

Shared by the reporter, which takes the slot when it starts (if it is free) and gives it up when
it stops, and :mod:`.process`, which fills it from the environment on first use. It imports
neither, so neither depends on the other through it.

Rules: once the environment was read, or a reporter was set, the slot is settled and the
environment is not read again, so after the process reporter stops, ``get_error_reporter()``
returns None rather than building a new reporter. Setting None unsettles it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["ReporterSlot", "process_slot"]

R = TypeVar("R")


class ReporterSlot(Generic[R]):
    """At most one reporter; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reporter: R | None = None
        self._settled = False

    def get(self, build: Callable[[], R | None]) -> R | None:
        """The reporter; on first use ``build()``'s (None: none configured). If it raises, nothing is settled."""
        if self._reporter is not None or self._settled:
            return self._reporter
        with self._lock:
            if self._reporter is None and not self._settled:
                built = build()
                self._settled = True
                self._reporter = built
        return self._reporter

    def set(self, reporter: R | None) -> None:
        """Hold ``reporter``; None empties the slot and reads the environment again next time."""
        with self._lock:
            self._reporter = reporter
            self._settled = reporter is not None

    def adopt(self, reporter: R) -> None:
        """Hold ``reporter`` if the slot holds none (the first reporter started wins)."""
        if self._reporter is None:
            self.set(reporter)

    def release(self, reporter: R) -> None:
        """Empty the slot if it holds ``reporter``; it stays settled."""
        with self._lock:
            if self._reporter is reporter:
                self._reporter = None


#: The process's slot. Typed loosely here; :mod:`.process` gives it its reporter type.
process_slot: ReporterSlot[Any] = ReporterSlot()
