"""Keep secrets out of telemetry: query strings, URLs, headers and log messages.

Exchange APIs put credentials in the query string (``api_key``, ``signature``, ``timestamp``
signing) and Telegram puts the bot token in the URL path, so both are scrubbed by default.
Users add key names with ``TELEMETRY_REDACT_KEYS`` or :func:`add_redact_keys`.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "add_redact_keys",
    "is_sensitive_key",
    "redact_query",
    "redact_text",
    "redact_url",
]

REDACTED = "REDACTED"

#: Key names (case-insensitive, ``-``/``_`` alike) whose values never leave the process.
_SENSITIVE = {
    "authorization",
    "proxy_authorization",
    "cookie",
    "set_cookie",
    "api_key",
    "apikey",
    "x_api_key",
    "access_token",
    "refresh_token",
    "token",
    "secret",
    "secret_key",
    "api_secret",
    "client_secret",
    "password",
    "passwd",
    "passphrase",
    "signature",
    "sig",
    "sign",
    "x_amz_signature",
    "x_amz_credential",
    "x_amz_security_token",
    "x_goog_signature",
    "ok_access_key",
    "ok_access_sign",
    "ok_access_passphrase",
    "x_mbx_apikey",
    "bot_token",
    "private_key",
}

_TELEGRAM_TOKEN = re.compile(r"/bot\d+:[A-Za-z0-9_-]+")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_key_value_pattern: re.Pattern[str] | None = None


def _normalise(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def _rebuild_pattern() -> None:
    global _key_value_pattern
    names = sorted({k.replace("_", "[-_]") for k in _SENSITIVE}, key=len, reverse=True)
    _key_value_pattern = re.compile(
        r"(?i)\b(" + "|".join(names) + r")(\"?\s*[=:]\s*\"?)(?!(?:bearer|basic)\s)([^\s&,;\"']+)"
    )


_rebuild_pattern()


def add_redact_keys(keys: list[str] | tuple[str, ...] | set[str]) -> None:
    """Add key names whose values are redacted everywhere (process-wide)."""
    _SENSITIVE.update(_normalise(k) for k in keys if k.strip())
    _rebuild_pattern()


def is_sensitive_key(key: str) -> bool:
    """Whether a query/header/attribute key's value must be redacted."""
    return _normalise(key) in _SENSITIVE


def redact_query(query: str) -> str:
    """``a=1&api_key=x`` → ``a=1&api_key=REDACTED``; a query without secrets is returned as is."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(is_sensitive_key(k) for k, _ in pairs):
        return query
    return urlencode([(k, REDACTED if is_sensitive_key(k) else v) for k, v in pairs])


def redact_url(url: str) -> str:
    """Redact user:password, secret query values and Telegram bot tokens in a URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}:{REDACTED}@" + netloc.rsplit("@", 1)[1]
    path = _TELEGRAM_TOKEN.sub(f"/bot{REDACTED}", parts.path)
    return urlunsplit((parts.scheme, netloc, path, redact_query(parts.query), parts.fragment))


def redact_text(text: str) -> str:
    """Redact ``key=value`` secrets, bearer tokens and bot tokens inside free text (log messages)."""
    assert _key_value_pattern is not None
    # Bearer/Basic first: in "Authorization: Bearer X" the key rule would take "Bearer" as the
    # value and leave the token itself behind.
    text = _BEARER.sub(lambda m: m.group(1) + " " + REDACTED, text)
    text = _key_value_pattern.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    return _TELEGRAM_TOKEN.sub(f"/bot{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts secrets from the formatted message of exported records."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
