"""TelegramLogHandler: ``logger.error(..., exc_info=True)`` anywhere becomes a Telegram report.

``emit`` only queues (see :meth:`TelegramErrorReporter.report_record`), so it never blocks the
logging thread. It ignores records of the reporter's own logger and of the HTTP client it uses,
and re-entrant calls, so a failing Telegram can never report itself in a loop.
"""

from __future__ import annotations

import logging
import threading

from otel_trader.telegram.process import current_reporter
from otel_trader.telegram.reporter import TelegramErrorReporter

__all__ = ["TelegramLogHandler"]

#: Loggers whose records are never reported: ours and the HTTP stack under the sender.
IGNORED_LOGGERS = ("otel_trader.telegram", "httpx", "httpcore", "hpack", "h2")
_IGNORED_PREFIXES = tuple(name + "." for name in IGNORED_LOGGERS)


class TelegramLogHandler(logging.Handler):
    """Report log records at ``level`` (ERROR by default) and above to Telegram.

    ``reporter`` defaults to the process reporter (:func:`get_error_reporter`) at each record,
    so the handler can be attached before the reporter is initialized.
    """

    def __init__(self, reporter: TelegramErrorReporter | None = None, level: int | str | None = None) -> None:
        if level is None:
            level = reporter.settings.min_level if reporter is not None else logging.ERROR
        super().__init__(level)
        self.reporter = reporter
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record``; never raises, never blocks, never recurses."""
        name = record.name
        if name in IGNORED_LOGGERS or name.startswith(_IGNORED_PREFIXES):
            return
        if getattr(self._local, "active", False):
            return
        self._local.active = True
        try:
            reporter = self.reporter or current_reporter()
            if reporter is not None:
                reporter.report_record(record)
        except Exception:  # a logging handler must not break the code that logs
            pass
        finally:
            self._local.active = False

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's API
        """Swallow: printing a traceback to stderr per failed report would be noise."""
