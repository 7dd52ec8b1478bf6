"""What goes wrong during the demo's load, on a fixed schedule, so the bot-health signals have something to show.

=========  ==============================================================================
at (s)     step
=========  ==============================================================================
1.0        the mock exchange's market data goes silent for 2.5 s (the bot reconnects)
1.5        the bot's event loop is held for 0.5 s by a synchronous call inside a span
2.0        the kill switch is tripped (``POST /bot/halt?reason=kill_switch``)
3.5        the kill switch is reset
=========  ==============================================================================

The schedule runs next to the load (:func:`with_scenario`) and is completed even if the load
ends first; then it waits (at most 4 s) until the bot has no open orders, so the summary reads
a settled state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["STEPS", "ScenarioLog", "run_scenario", "with_scenario"]

T = TypeVar("T")

#: (seconds after the start, service, method, path, what it does)
STEPS = (
    (1.0, "exchange", "/demo/stall?seconds=2.5", "market data silent for 2.5 s"),
    (1.5, "api", "/bot/block?seconds=0.5", "event loop held for 0.5 s"),
    (2.0, "api", "/bot/halt?reason=kill_switch", "kill switch tripped"),
    (3.5, "api", "/bot/resume?reason=kill_switch", "kill switch reset"),
)


@dataclass
class ScenarioLog:
    """What the scenario did: ``(seconds after start, step, HTTP status or error)``."""

    steps: list[tuple[float, str, str]] = field(default_factory=list)
    settled: bool = False


async def run_scenario(api_url: str, exchange_url: str, log: ScenarioLog | None = None) -> ScenarioLog:
    """Run :data:`STEPS` against the services, then wait for the bot's open orders to drain."""
    import httpx

    log = log or ScenarioLog()
    start = time.monotonic()
    urls = {"api": api_url.rstrip("/"), "exchange": exchange_url.rstrip("/")}
    async with httpx.AsyncClient(timeout=5.0) as client:
        for at, service, path, what in STEPS:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            try:
                reply = await client.post(urls[service] + path)
                outcome = str(reply.status_code)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            log.steps.append((round(time.monotonic() - start, 2), what, outcome))
        deadline = time.monotonic() + 4.0
        while time.monotonic() < deadline:
            try:
                status = (await client.get(urls["api"] + "/bot/status")).json()
            except (httpx.HTTPError, ValueError):
                break
            if not status.get("open_orders"):
                log.settled = True
                break
            await asyncio.sleep(0.2)
    return log


async def with_scenario(
    load: Awaitable[T], api_url: str, exchange_url: str, log: ScenarioLog | None = None
) -> T:
    """Await ``load`` with the scenario running alongside; returns the load's result once both are done."""
    scenario = asyncio.ensure_future(run_scenario(api_url, exchange_url, log))
    try:
        result = await load
        await scenario
    finally:
        scenario.cancel()
    return result
