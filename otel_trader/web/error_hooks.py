"""The callbacks run for every unhandled request exception, owned by the web side.

One :class:`ErrorHooks` per :class:`~otel_trader.sdk.manager.TelemetryManager` is handed to every
:class:`~otel_trader.web.middleware.MonitoringMiddleware` it builds, so a hook added later (the
Telegram reporter, installed in the lifespan's start-up) applies to apps built earlier too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otel_trader.web.middleware import RequestInfo

__all__ = ["ErrorHook", "ErrorHooks"]

logger = logging.getLogger("otel_trader")

#: Called with the exception and what is known of the request.
ErrorHook = Callable[[BaseException, "RequestInfo"], None]


class ErrorHooks:
    """An ordered set of error hooks; adding and removing are thread-safe, calling takes a snapshot."""

    def __init__(self, hooks: Iterable[ErrorHook] = ()) -> None:
        self._lock = threading.Lock()
        self._hooks: tuple[ErrorHook, ...] = ()
        for hook in hooks:
            self.add(hook)

    def add(self, hook: ErrorHook) -> None:
        """Call ``hook(exc, request_info)`` for every unhandled request exception (once, however often added)."""
        with self._lock:
            if hook not in self._hooks:
                self._hooks = (*self._hooks, hook)

    def remove(self, hook: ErrorHook) -> None:
        """Stop calling ``hook``; a hook not added is ignored."""
        with self._lock:
            self._hooks = tuple(h for h in self._hooks if h is not hook and h != hook)

    def __contains__(self, hook: object) -> bool:
        return hook in self._hooks

    def __iter__(self) -> Iterator[ErrorHook]:
        return iter(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def call(self, exc: BaseException, info: RequestInfo) -> None:
        """Run every hook; one that raises is logged and the others still run."""
        for hook in self._hooks:
            try:
                hook(exc, info)
            except Exception:  # a broken hook must not change the response
                logger.warning("otel-trader: error hook %r failed", hook, exc_info=True)
