"""Nothing secret leaves for Telegram: every text of a report goes through ``redact_text``.

A database DSN with its password and a bare bot token are planted in each part of a report the
Bot API receives: the exception message, its cause, a source line of the traceback, the
``additional_context`` values and keys, the request route, a log message and the dedup
follow-up. The Telegram stand-in must receive none of them.
"""

from __future__ import annotations

import logging

import pytest

from otel_trader import RequestInfo, TelegramErrorReporter

from .conftest import run, wait_until
from .fake_telegram import TOKEN, FakeTelegram

pytestmark = pytest.mark.timeout(60)

DSN_PASSWORD = "Pg-pl4nted-pw"
DSN = f"postgresql://trader:{DSN_PASSWORD}@db.internal:5432/orders"
BOT_SECRET = "AAHpl4ntedB0tT0kenXYZabcdefghijklmno"
BOT_TOKEN = f"987654321:{BOT_SECRET}"
SECRETS = (DSN_PASSWORD, BOT_SECRET)


def connect() -> None:
    # The source line itself carries the secret: the traceback shows it.
    raise ConnectionError("could not connect to postgresql://trader:Pg-pl4nted-pw@db.internal:5432/orders")


def failed_order() -> RuntimeError:
    try:
        try:
            connect()
        except ConnectionError as inner:
            raise RuntimeError(f"order store {DSN} down; alert bot {BOT_TOKEN} notified") from inner
    except RuntimeError as exc:
        return exc
    raise AssertionError("unreachable")


def test_planted_dsn_password_and_bot_token_never_reach_telegram(fake_telegram: FakeTelegram) -> None:
    async def scenario() -> None:
        reporter = TelegramErrorReporter(
            TOKEN, ["1001"], enabled=True, api_base_url=fake_telegram.url, dedup_minutes=10
        )
        await reporter.initialize()
        context = {"dsn": DSN, "notifier": f"bot {BOT_TOKEN}", f"url {DSN}": "key carries it"}
        await reporter.report_error(failed_order(), additional_context=context)
        await reporter.report_error(failed_order(), additional_context=context)  # → a follow-up
        request = RequestInfo("POST", f"/hooks/{BOT_TOKEN}/{DSN}", f"/hooks/{BOT_TOKEN}", 500, None, None)
        reporter.hook(ValueError(f"webhook for {BOT_TOKEN} rejected"), request)
        record = logging.LogRecord(
            "bot.db", logging.ERROR, __file__, 1, "lost %s and %s", (DSN, BOT_TOKEN), None
        )
        reporter.report_record(record)
        await wait_until(lambda: len(fake_telegram.sent()) == 3)
        await reporter.shutdown(timeout=5)  # sends the follow-up of the repeated error

    run(scenario())
    calls = fake_telegram.sent()
    assert len(calls) == 4, [c.visible for c in calls]
    texts = [c.text or "" for c in calls]
    assert any("more like this" in t for t in texts)
    assert any("db.internal" in t for t in texts)  # the report still says where it failed
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} reached Telegram in:\n{text}"
