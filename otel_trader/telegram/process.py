"""The process reporter: ``get_error_reporter()``, ``set_error_reporter()``, ``current_reporter()``.

The first reporter started (``initialize()``) becomes the process reporter; without one,
``get_error_reporter()`` builds one from the environment when
``TELEGRAM_ERROR_REPORTING_ENABLED=true`` and returns None otherwise, so ``if error_reporter:``
guards work. The slot's rules are in :mod:`.slot`.
"""

from __future__ import annotations

from otel_trader.telegram.reporter import TelegramErrorReporter
from otel_trader.telegram.settings import TelegramSettings
from otel_trader.telegram.slot import process_slot

__all__ = ["current_reporter", "get_error_reporter", "set_error_reporter"]


def _from_environment() -> TelegramErrorReporter | None:
    settings = TelegramSettings()  # invalid settings raise ConfigError; nothing is remembered then
    return TelegramErrorReporter(settings=settings) if settings.enabled else None


def get_error_reporter() -> TelegramErrorReporter | None:
    """The process's reporter, or None when Telegram reporting is not configured.

    The first initialized reporter becomes the process reporter; without one, a reporter is
    built from the environment when ``TELEGRAM_ERROR_REPORTING_ENABLED=true`` (invalid settings
    raise :class:`otel_trader.ConfigError` here: call this once at start-up).
    """
    reporter: TelegramErrorReporter | None = process_slot.get(_from_environment)
    return reporter


def set_error_reporter(reporter: TelegramErrorReporter | None) -> None:
    """Make ``reporter`` the process reporter (None: forget it and re-read the environment next time)."""
    process_slot.set(reporter)


def current_reporter() -> TelegramErrorReporter | None:
    """Like :func:`get_error_reporter` but never raises (for the logging handler)."""
    try:
        return get_error_reporter()
    except Exception:
        return None
