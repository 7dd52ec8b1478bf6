"""An instrumented app served by several workers (uvicorn ``--workers``, gunicorn, hypercorn).

Every request records a counter, an up-down counter and a gauge through otel-trader's helpers,
so the tests can check how ``/metrics`` merges each kind across workers. ``/health/pid`` names
the worker that answered, and is not counted (``/health`` is an excluded path).
"""

from __future__ import annotations

import os

from fastapi import FastAPI

import otel_trader

app = FastAPI()
otel_trader.instrument_app(app)


@app.get("/work/{item}")
async def work(item: str) -> dict[str, int]:
    otel_trader.record_counter("worker_jobs_total", attributes={"kind": "work"}, description="Jobs done.")
    otel_trader.record_up_down("worker_open_jobs", 1, description="Jobs opened, never closed.")
    otel_trader.set_gauge("worker_last_pid", float(os.getpid()), description="Pid of the last worker.")
    return {"pid": os.getpid()}


@app.get("/health/pid")
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}
