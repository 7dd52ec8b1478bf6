"""Delivery: one bounded queue and one worker task per chat, so a slow or broken chat only delays itself.

Each worker sends its chat's messages one at a time with ``sendMessage`` and acts on the outcome
(:func:`.api.classify`):

* ``ok``: delivered.
* 429 (``throttled``): waits ``retry_after`` and resends, up to :data:`MAX_THROTTLED` times and
  for at most :data:`MAX_RETRY_AFTER` seconds; beyond that the chat pauses until ``retry_after``
  ends, and its reports fail at once meanwhile (one warning).
* 5xx, timeout, connection error (``retry``): resends after an exponential backoff with jitter,
  up to ``max_retries`` times. One warning per outage, one line when the Bot API answers again.
* 401/404 (``bad_token``): stops every chat; intake then counts reports as failed (one warning).
* 400/403 about the chat (``bad_chat``): that chat gets no more reports (one warning).
* ``migrated``: the group became a supergroup; resends to its new id.
* ``bad_markup``: resends once as plain text; an error report must arrive even if our HTML fails.
* anything else: the message fails (one warning per description).

Settlement: a message fanned out to several chats (:class:`Delivery`) is counted once, when its
last chat is done: ``sent`` if any chat got it, else ``failed``. The message a worker holds
(:attr:`Chat.inflight`) is settled exactly once, by its worker, or by :meth:`Sender.abandon` when
shutdown had to stop the worker without it.

Deadline: after :meth:`Sender.give_up_after`, a retry wait that would end past the deadline is
not started, and one already waiting that would is released at once and fails, so a shutdown is
never held by a wait it could not see the end of.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otel_trader.telegram.counters import ReportCounters
from otel_trader.telegram.format import to_plain_text
from otel_trader.telegram.intake import QueuedItem
from otel_trader.telegram.log import WarnOnce, logger
from otel_trader.telegram.report import ErrorReport
from otel_trader.telegram.settings import TelegramSettings

if TYPE_CHECKING:
    from otel_trader.telegram.api import ApiResult, BotApi

__all__ = ["MAX_RETRY_AFTER", "MAX_THROTTLED", "Chat", "Delivery", "Sender"]

#: A retry_after longer than this is not waited out: the message fails and the chat pauses.
MAX_RETRY_AFTER = 300.0
#: 429s one message waits out before its chat pauses instead.
MAX_THROTTLED = 5
#: Longest backoff between two retries after a 5xx or a network error, in seconds.
MAX_BACKOFF = 10.0


class Delivery:
    """One message fanned out to several chats; counts its outcome when the last chat is done."""

    __slots__ = ("counted", "counters", "level", "ok", "pending")

    def __init__(self, counters: ReportCounters, level: int, pending: int, counted: bool) -> None:
        self.counters = counters
        self.level = level
        #: Chats that have not settled this message yet.
        self.pending = pending
        #: False for follow-ups: only error occurrences are counted.
        self.counted = counted
        self.ok = False

    def done(self, ok: bool) -> None:
        """One chat is done with the message (``ok``: it was delivered there)."""
        self.ok = self.ok or ok
        self.pending -= 1
        if self.pending == 0 and self.counted:
            self.counters.count(self.level, "sent" if self.ok else "failed")


@dataclass
class Chat:
    """One chat's queue, its worker and what the Bot API said about it."""

    chat_id: str
    queue: asyncio.Queue[tuple[Delivery, str]]
    disabled: bool = False
    #: The message being sent now; settled exactly once, by its worker or by shutdown.
    inflight: Delivery | None = None
    paused_until: float = 0.0
    task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """Whether a message to this chat is being sent (or waits for its retry)."""
        return self.inflight is not None

    def settle(self, ok: bool) -> None:
        """Settle the message in flight, if any (a second call does nothing)."""
        delivery, self.inflight = self.inflight, None
        if delivery is not None:
            delivery.done(ok)


class Sender:
    """The chats of one running reporter and the retry state machine; event-loop only."""

    def __init__(
        self,
        api: BotApi,
        loop: asyncio.AbstractEventLoop,
        settings: TelegramSettings,
        counters: ReportCounters,
        warn_once: WarnOnce,
    ) -> None:
        self._api = api
        self._loop = loop
        self._max_retries = settings.max_retries
        self._backoff_seconds = settings.retry_backoff_seconds
        self._counters = counters
        self._warn_once = warn_once
        self.chats = [Chat(c, asyncio.Queue(settings.queue_size)) for c in settings.chat_ids]
        #: False once Telegram rejected the bot token: nothing is sent any more.
        self.token_ok = True
        #: Loop time after which no retry is waited for (see :meth:`give_up_after`).
        self.give_up_at = float("inf")
        # Retry waits in progress and the loop time each ends.
        self._sleepers: dict[asyncio.Future[None], float] = {}
        self._outage_failures = 0

    def start(self, context: contextvars.Context) -> None:
        """Start one worker per chat, in ``context`` (the caller's span must not be inherited)."""
        for chat in self.chats:
            chat.task = context.run(self._loop.create_task, self._worker(chat))

    @property
    def tasks(self) -> list[asyncio.Task[None]]:
        """The workers' tasks."""
        return [c.task for c in self.chats if c.task is not None]

    @property
    def active_chats(self) -> list[str]:
        """Chats still receiving reports."""
        return [c.chat_id for c in self.chats if not c.disabled] if self.token_ok else []

    @property
    def idle(self) -> bool:
        """Whether every chat's queue is empty and nothing is being sent."""
        return all(c.queue.empty() and not c.busy for c in self.chats)

    def fan_out(self, item: QueuedItem, render: Callable[[QueuedItem], str]) -> None:
        """Queue ``item``, rendered once, to every active chat (a full chat's queue drops it)."""
        counted = isinstance(item, ErrorReport)
        chats = [c for c in self.chats if not c.disabled] if self.token_ok else []
        delivery = Delivery(self._counters, item.level, len(chats), counted)
        if not chats:
            if counted:
                self._counters.count(item.level, "failed")
            return
        text = render(item)
        for chat in chats:
            try:
                chat.queue.put_nowait((delivery, text))
            except asyncio.QueueFull:
                self._warn_once(
                    f"chat_full:{chat.chat_id}",
                    "otel-trader: Telegram queue of chat %s is full; dropping its reports",
                    chat.chat_id,
                )
                delivery.done(False)

    def give_up_after(self, when: float) -> None:
        """Wait for no retry ending after loop time ``when``; those waiting now fail at once."""
        self.give_up_at = when
        for waiter, end in list(self._sleepers.items()):
            if end > when:
                _release(waiter)

    def abandon(self) -> None:
        """Fail what the workers hold and what their queues still have (after they were stopped)."""
        for chat in self.chats:
            chat.settle(False)  # in flight in a task that did not end
            while not chat.queue.empty():
                delivery, _ = chat.queue.get_nowait()
                delivery.done(False)

    async def _worker(self, chat: Chat) -> None:
        while True:
            delivery, text = await chat.queue.get()
            chat.inflight = delivery
            ok = False
            try:
                ok = await self._deliver(chat, text)
            except asyncio.CancelledError:
                chat.settle(False)
                raise
            except Exception:  # the sender must survive anything
                logger.warning("otel-trader: unexpected error sending to Telegram", exc_info=True)
            chat.settle(ok)

    async def _deliver(self, chat: Chat, text: str) -> bool:
        attempts = throttled = 0
        parse_mode: str | None = "HTML"
        while True:
            if not self.token_ok or chat.disabled or self._loop.time() < chat.paused_until:
                return False
            result = await self._api.send_message(chat.chat_id, text, parse_mode)
            outcome = result.outcome
            if outcome == "ok":
                self._recovered()
                return True
            if outcome == "throttled":
                self._recovered()  # Telegram answered: not an outage
                wait = result.retry_after or 1.0
                until = self._loop.time() + wait
                throttled += 1
                if wait <= MAX_RETRY_AFTER and throttled <= MAX_THROTTLED:
                    logger.debug("otel-trader: Telegram 429 for chat %s, waiting %gs", chat.chat_id, wait)
                    if await self._pause(wait):
                        continue
                chat.paused_until = until
                self._warn_once(
                    f"throttled:{chat.chat_id}",
                    "otel-trader: Telegram rate-limits chat %s (retry after %gs); reports to it "
                    "fail until then",
                    chat.chat_id,
                    wait,
                )
                return False
            if outcome == "retry":
                self._outage(result)
                attempts += 1
                if attempts > self._max_retries:
                    return False
                if not await self._pause(self._backoff(attempts, result.retry_after)):
                    return False
                continue
            self._recovered()
            if outcome == "bad_token":
                if self.token_ok:
                    self.token_ok = False
                    logger.warning(
                        "otel-trader: Telegram rejected the bot token (%s %s); error reporting stopped. "
                        "Check TELEGRAM_TOKEN.",
                        result.status,
                        result.description,
                    )
                return False
            if outcome == "bad_chat":
                if not chat.disabled:
                    chat.disabled = True
                    logger.warning(
                        "otel-trader: Telegram chat %s cannot receive reports (%s %s); no more reports go "
                        "to it. Check TELEGRAM_CHAT_IDS and that the bot is a member.",
                        chat.chat_id,
                        result.status,
                        result.description,
                    )
                return False
            if outcome == "migrated" and result.migrate_to and result.migrate_to != chat.chat_id:
                logger.warning(
                    "otel-trader: Telegram chat %s became supergroup %s; sending there. Update TELEGRAM_CHAT_IDS.",
                    chat.chat_id,
                    result.migrate_to,
                )
                chat.chat_id = result.migrate_to
                continue
            if outcome == "bad_markup" and parse_mode is not None:
                # Our HTML should always parse; if not, the error still deserves to arrive.
                logger.warning(
                    "otel-trader: Telegram could not parse a report (%s); sending it as plain text",
                    result.description,
                )
                parse_mode, text = None, to_plain_text(text)
                continue
            self._warn_once(
                f"rejected:{result.description}",
                "otel-trader: Telegram rejected a report for chat %s: %s %s",
                chat.chat_id,
                result.status,
                result.description,
            )
            return False

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` before a retry; False, at once, if it would end past the give-up time."""
        end = self._loop.time() + seconds
        if end > self.give_up_at:
            return False
        waiter: asyncio.Future[None] = self._loop.create_future()
        timer = self._loop.call_later(seconds, _release, waiter)
        self._sleepers[waiter] = end
        try:
            await waiter  # released early by give_up_after() when ``end`` is past the deadline
        finally:
            timer.cancel()
            self._sleepers.pop(waiter, None)
        return end <= self.give_up_at

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER)
        base = min(self._backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF)
        return base * random.uniform(0.8, 1.2)  # jitter: chats and processes do not retry in step

    def _outage(self, result: ApiResult) -> None:
        self._outage_failures += 1
        if self._outage_failures == 1:
            logger.warning(
                "otel-trader: Telegram Bot API unreachable or failing (%s); retrying, and reports fail "
                "until it is back (logged once per outage)",
                result.description if result.status is None else f"{result.status} {result.description}",
            )

    def _recovered(self) -> None:
        if self._outage_failures:
            logger.warning(
                "otel-trader: Telegram Bot API is back after %d failed attempt(s)", self._outage_failures
            )
            self._outage_failures = 0


def _release(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
