"""Export threads hand the GIL over every few hundred microseconds of work.

A thread running Python code keeps the GIL until another thread has waited for it for the
switch interval (5 ms). The event loop gives the GIL up at every socket call and has to get it
back afterwards: while an export thread encodes a batch (several ms of pure Python), each of
those round trips costs the loop up to 5 ms, and requests in flight stall for the whole export
(measured: p99 of a loaded server 4× its p50). ``time.sleep(0)`` releases the GIL and wakes the
thread waiting for it, so a waiting loop runs within ≈ 0.1 ms. It wastes no CPU: when nobody
waits, the export thread takes the GIL straight back.

Contract: loops over the items of one export call :func:`pause` every :data:`EVERY` items.
"""

from __future__ import annotations

from time import sleep

__all__ = ["EVERY", "pause"]

#: Items between pauses: ≈ 0.1–0.5 ms of work per item kind (unpack, scrub, encode) at ≈ 3–5 µs each.
EVERY = 64


def pause() -> None:
    """Let a thread waiting for the GIL run now."""
    sleep(0)
