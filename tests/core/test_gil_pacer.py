"""The export threads' GIL hand-over (otel_trader/sdk/gil.py) backs off when the other thread is busy."""

from __future__ import annotations

import threading

from otel_trader.sdk import gil


def _steps(pacer: gil.Pacer, n: int) -> None:
    for _ in range(n):
        pacer.step()


def test_hand_overs_stay_frequent_when_nobody_waits_for_the_gil() -> None:
    pacer = gil.Pacer()
    seen = []
    for _ in range(20):
        _steps(pacer, pacer.every)
        seen.append(pacer.every)
    # A shared machine may stall one sleep(0) past the threshold now and then; that is undone next.
    assert seen.count(gil.EVERY) >= 15, seen


def test_hand_overs_back_off_while_another_thread_runs_python_and_recover_after() -> None:
    stop = threading.Event()

    def busy() -> None:  # a producer in a tight loop: it gives the GIL back only at forced switches
        n = 0
        while not stop.is_set():
            n += 1

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    pacer = gil.Pacer()
    try:
        # Hand-overs take ≈ one switch interval now; one that happens to be quick halves the
        # interval again, so the loop is bounded by hand-overs, not by a count that must hold.
        for _ in range(200):
            _steps(pacer, pacer.every)
            if pacer.every >= 4 * gil.EVERY:
                break
        backed_off = pacer.every
    finally:
        stop.set()
        thread.join()
    assert backed_off >= 4 * gil.EVERY
    for _ in range(1000):  # quick hand-overs again: halved back
        _steps(pacer, pacer.every)
        if pacer.every == gil.EVERY:
            break
    assert pacer.every == gil.EVERY


def test_each_thread_has_its_own_pacer() -> None:
    mine = gil.pacer()
    assert gil.pacer() is mine
    other: list[gil.Pacer] = []
    thread = threading.Thread(target=lambda: other.append(gil.pacer()))
    thread.start()
    thread.join()
    assert other[0] is not mine
