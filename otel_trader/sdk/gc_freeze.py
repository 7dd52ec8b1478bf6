"""The heap an app builds at start-up, moved out of the cyclic GC's way once it has started.

A full collection traverses every object the GC tracks: in a FastAPI service most of them are
modules, classes, the app and its routes, pools and caches built at start-up, none of which ever
becomes garbage, and traversing them is what makes a full collection pause every request for tens
of milliseconds. ``gc.freeze()`` moves the objects alive at that moment into a permanent
generation that collections skip; objects made afterwards are collected as before, so full
collections only traverse what the running service allocates.

Contract: :func:`freeze_started_app` runs once the application's own lifespan start-up has
finished, after a collection of the two young generations (the garbage start-up code just
made is freed, not frozen); the lifespan's end calls :func:`unfreeze`, so an app stopped and
started again in one process (tests) does not keep its old objects out of reach of the GC.
Objects alive at the freeze that later become cyclic garbage stay allocated until then
(objects freed by reference counting are freed as usual), and so does the cyclic garbage
already in the oldest generation: measured ≈ 10 objects after FastAPI's start-up, where a full
collection to free them would hold the event loop for 60–150 ms on the machines measured.
``TELEMETRY_GC_FREEZE=false`` leaves the GC alone.
"""

from __future__ import annotations

import gc
import logging

__all__ = ["freeze_started_app", "unfreeze"]

logger = logging.getLogger("otel_trader")


def freeze_started_app(enabled: bool) -> bool:
    """Collect the young generations, then freeze the heap; returns whether it froze."""
    if not enabled:
        return False
    gc.collect(1)
    gc.freeze()
    logger.debug("otel-trader: %d start-up objects frozen out of GC collections", gc.get_freeze_count())
    return True


def unfreeze() -> None:
    """Hand the frozen objects back to the GC (into the oldest generation)."""
    gc.unfreeze()
