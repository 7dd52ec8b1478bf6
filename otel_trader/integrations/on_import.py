"""Instrument a library when it is first imported, not before: importing it to find out costs start-up.

``import ccxt`` alone takes ≈ 0.5 s and tens of MiB; a service that has ccxt (or aiohttp,
requests, websockets) installed but never imports it pays nothing. A library already imported
when telemetry is configured is instrumented at once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from types import ModuleType

__all__ = ["when_imported"]

logger = logging.getLogger("otel_trader")


def when_imported(module: str, hook: Callable[[ModuleType], None]) -> Callable[[], None]:
    """Call ``hook(module)`` now if ``module`` is imported, else right after its first import.

    Returns a function that cancels the hook (a hook registered before the import cannot be
    removed from the import system; cancelled, it does nothing). A failing hook is logged as a
    warning and never breaks the application's import.
    """
    active = [True]

    def run(loaded: ModuleType) -> None:
        if not active[0]:
            return
        try:
            hook(loaded)
        except Exception as exc:  # an integration must never take the application down
            logger.warning("otel-trader: could not instrument %s: %s", module, exc)

    loaded = sys.modules.get(module)
    if loaded is not None:
        run(loaded)
    else:
        from wrapt import register_post_import_hook

        register_post_import_hook(run, module)

    def cancel() -> None:
        active[0] = False

    return cancel
