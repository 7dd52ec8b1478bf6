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

from .connection import ConnectionResult
from .handler import TelegramLogHandler
from .process import get_error_reporter, set_error_reporter
from .reporter import TelegramErrorReporter
from .settings import TelegramSettings

__all__ = [
    "ConnectionResult",
    "TelegramErrorReporter",
    "TelegramLogHandler",
    "TelegramSettings",
    "get_error_reporter",
    "set_error_reporter",
]
