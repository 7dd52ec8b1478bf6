"""The dispatcher: one task on the event loop between the intake and the chats' queues.

It wakes when a report is queued, and at least every tick so dedup windows close on time; it
queues the follow-ups of windows that have ended, then renders each queued item once and fans it
out to every chat, yielding to the loop between items so a burst does not hog it. Rendering never
fails a report: if formatting raises, a short plain message goes out instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from otel_trader.telegram.dedup import FollowUp
from otel_trader.telegram.delivery import Sender
from otel_trader.telegram.format import format_follow_up, format_report, to_plain_text
from otel_trader.telegram.identity import ServiceIdentity
from otel_trader.telegram.intake import Intake, QueuedItem
from otel_trader.telegram.log import logger

__all__ = ["dispatch", "render", "tick_seconds"]


def tick_seconds(dedup_seconds: float) -> float:
    """Longest sleep of the dispatcher: often enough to close windows on time, rarely enough to cost nothing."""
    return 1.0 if dedup_seconds <= 0 else min(1.0, max(0.05, dedup_seconds / 10))


def render(item: QueuedItem, identity: ServiceIdentity) -> str:
    """The Telegram HTML of a report or follow-up; a minimal text if formatting fails."""
    try:
        if isinstance(item, FollowUp):
            return format_follow_up(item, service=identity.service_name, environment=identity.environment)
        return format_report(
            item,
            service=identity.service_name,
            environment=identity.environment,
            signoz_url=identity.signoz_url,
        )
    except Exception:
        logger.warning("otel-trader: formatting an error report failed", exc_info=True)
        if isinstance(item, FollowUp):
            return f"{item.count} more errors like the previous one"
        return f"{item.level_name}: {to_plain_text(item.error_type)}"[:1000]


async def dispatch(
    intake: Intake,
    sender: Sender,
    render: Callable[[QueuedItem], str],
    tick: float,
    closed: Callable[[], bool],
) -> None:
    """Move items from ``intake`` to ``sender`` until ``closed()`` or the task is cancelled."""
    while not closed():
        await intake.wait(tick)
        try:
            intake.queue_due_follow_ups()
        except Exception:
            logger.warning("otel-trader: Telegram dedup sweep failed", exc_info=True)
        while True:
            item = intake.pop()
            if item is None:
                break
            sender.fan_out(item, render)
            await asyncio.sleep(0)  # formatting many messages must not hog the loop
