"""Telegram error reporting: ``TelegramErrorReporter``, its logging handler and middleware hook.

    reporter = TelegramErrorReporter(bot_token, chat_ids, enabled=True)
    await reporter.initialize()           # on the serving loop, at start-up
    reporter.install()                    # MonitoringMiddleware errors → Telegram
    logging.getLogger().addHandler(TelegramLogHandler(reporter))
    ...
    await reporter.shutdown()

httpx is imported only when a reporter starts (``pip install otel-trader[httpx]``).
"""

from __future__ import annotations

from otel_trader.telegram.connection import ConnectionResult
from otel_trader.telegram.handler import TelegramLogHandler
from otel_trader.telegram.process import get_error_reporter, set_error_reporter
from otel_trader.telegram.reporter import TelegramErrorReporter
from otel_trader.telegram.settings import TelegramSettings

__all__ = [
    "ConnectionResult",
    "TelegramErrorReporter",
    "TelegramLogHandler",
    "TelegramSettings",
    "get_error_reporter",
    "set_error_reporter",
]
