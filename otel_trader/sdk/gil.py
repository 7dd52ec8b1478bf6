"""Export threads hand the GIL over every few hundred microseconds of work, while that is cheap.

A thread running Python code keeps the GIL until another thread has waited for it for the
switch interval (5 ms). The event loop gives the GIL up at every socket call and has to get it
back afterwards: while an export thread encodes a batch (several ms of pure Python), each of
those round trips costs the loop up to 5 ms, and requests in flight stall for the whole export
(measured: p99 of a loaded server 4× its p50). ``time.sleep(0)`` releases the GIL and wakes the
thread waiting for it, so a waiting loop runs within ≈ 0.1 ms. It wastes no CPU: when nobody
waits, the export thread takes the GIL straight back.

When the thread that took the GIL is itself busy running Python (a saturated event loop, a
producer in a tight loop), the export thread gets it back only at that thread's next forced
switch, up to 5 ms later, and pausing every few items starves the export (measured: one
process exported ≈ 20k of 25k spans/s and its queue dropped the rest). A :class:`Pacer` whose
hand-over took longer than :data:`SLOW` doubles its interval, up to :data:`MAX_EVERY`; the busy
thread is not helped by voluntary hand-overs then, it gets the GIL at its own forced switches.
Quick hand-overs halve the interval again, back to :data:`EVERY`.

Contract: loops over the items of one export call call ``step()`` of :func:`pacer` per item.
"""

from __future__ import annotations

import threading
from time import perf_counter, sleep

__all__ = ["EVERY", "MAX_EVERY", "SLOW", "Pacer", "pacer"]

#: Items between hand-overs: ≈ 0.1–0.5 ms of work per item kind (encode, scrub) at ≈ 3–6 µs each.
EVERY = 64
#: The longest interval, when every hand-over costs a forced switch: ≈ 10–20 ms of work.
MAX_EVERY = 4096
#: A hand-over slower than this (seconds) found the other thread busy: a quick one takes ≈ 0.1 ms.
SLOW = 0.001

_threads = threading.local()


class Pacer:
    """Counts one thread's items and hands the GIL over every ``every`` of them."""

    __slots__ = ("count", "every")

    def __init__(self) -> None:
        self.count = 0
        self.every = EVERY

    def step(self) -> None:
        """One item done: hand the GIL over if this is the ``every``-th."""
        count = self.count + 1
        if count < self.every:
            self.count = count
            return
        self.count = 0
        began = perf_counter()
        sleep(0)
        if perf_counter() - began > SLOW:
            self.every = min(self.every * 2, MAX_EVERY)
        elif self.every > EVERY:
            self.every //= 2


def pacer() -> Pacer:
    """This thread's pacer: its interval carries over from one export call to the next."""
    found: Pacer | None = getattr(_threads, "pacer", None)
    if found is None:
        found = _threads.pacer = Pacer()
    return found
