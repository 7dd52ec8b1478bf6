"""The package's logger and the reporter's warn-once memory.

Every module here logs to ``otel_trader.telegram``. :class:`~.handler.TelegramLogHandler` never
reports records of that logger, so trouble sending a report can never become a report itself.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["WarnOnce", "logger"]

logger = logging.getLogger("otel_trader.telegram")


class WarnOnce:
    """Log a warning once per key; remembers at most ``limit`` keys, then warns no more.

    One per reporter: a broken chat or a full queue is worth one line, not one per report.
    Called from any thread without a lock: at worst a warning is logged twice.
    """

    def __init__(self, limit: int = 1000) -> None:
        self._keys: set[str] = set()
        self._limit = limit

    def __call__(self, key: str, message: str, *args: Any) -> None:
        if key not in self._keys and len(self._keys) < self._limit:
            self._keys.add(key)
            logger.warning(message, *args)
