# Long because the key rules, the value patterns (URLs, DSNs, tokens) and the log/console hooks
# are one policy, applied the same at every exit; split, they would drift apart.
"""Keep secrets out of telemetry: attribute keys, query strings, URLs, free text and log records.

Two questions are answered here, both process-wide and cached:

* :func:`is_sensitive_key` — does a *key* (query parameter, header, span/log attribute, metric
  label, ``key=value`` pair in text) name a credential? Keys are split into words (camelCase,
  ``-``, ``_``, ``.``, ``[]`` and ``%5B%5D`` all separate words) and the key is sensitive when
  its trailing words are a credential name: ``accessToken``, ``X-BAPI-API-KEY``,
  ``http.request.header.authorization``, ``api_key[]``, ``CB-ACCESS-PASSPHRASE``, Kraken's
  ``API-Sign``. Matching whole words keeps ``design``, ``signal``, ``token_count`` (an LLM
  counter, not a token) and ``cache_key`` (a Redis key name) readable; ``key`` on its own
  (Google-style ``?key=…``) is a credential, ``<word>_key`` only for credential words (``api``,
  ``access``, ``secret``, ``private``, ``signing``…).
* :func:`redact_text` — which *values* inside a string are secrets? ``key=value`` / ``key: value``
  / ``"key": "value"`` pairs with a sensitive key, ``Bearer``/``Basic``/``Token`` credentials,
  URL user-info (``postgresql://user:pw@host``, ``redis://:pw@host``), Telegram bot tokens (in a
  ``/bot<token>/`` path and bare, ``123456789:AAH…``), the segment after ``/webhook/`` or
  ``/token/`` when it looks like a secret, and SQL ``PASSWORD '…'`` literals.

Users add key names with ``TELEMETRY_REDACT_KEYS`` or :func:`add_redact_keys`; an added name
matches the same way (``desk-pin`` also matches ``deskPin`` and ``trader.desk_pin``).

Where it is applied: spans and log records on the export thread (:mod:`otel_trader.sdk.scrubbing`),
the process's own log handlers (:class:`RedactingFilter`), metric labels, Telegram messages and
error texts. The collector scrubs again as a second line (``collector/otelcol-config.yaml``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "RedactingFilter",
    "add_redact_keys",
    "install_console_redaction",
    "is_sensitive_key",
    "redact_attribute",
    "redact_query",
    "redact_text",
    "redact_url",
    "rules_version",
]

REDACTED = "REDACTED"

#: A key whose last word is one of these is a credential.
_WORDS = frozenset(
    {
        "authorization",
        "cookie",
        "cookies",
        "token",
        "secret",
        "secrets",
        "password",
        "passwords",
        "passwd",
        "pwd",
        "passphrase",
        "signature",
        "sig",
        "sign",
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
        "credential",
        "credentials",
        "dsn",
        "mnemonic",
        "jwt",
        "authent",  # Kraken Futures' signature header
    }
)
#: ``<word>_key`` is a credential for these words only (``cache_key``, ``sort_key`` are not).
_KEY_QUALIFIERS = (
    "access",
    "account",
    "api",
    "app",
    "auth",
    "bot",
    "client",
    "consumer",
    "encryption",
    "hmac",
    "license",
    "master",
    "private",
    "secret",
    "session",
    "shared",
    "sign",
    "signature",
    "signing",
    "ssh",
    "storage",
    "subscription",
    "wallet",
    "webhook",
)
#: Multi-word credential names, matched as the key's trailing words.
_PHRASES = frozenset({f"{q}_key" for q in _KEY_QUALIFIERS} | {"access_key_id", "seed_phrase"})
#: A last word written without separators that ends like this is a credential too
#: (``csrftoken``, ``xapikey``, ``clientsecret``).
_GLUED = ("token", "secret", "password", "passwd", "passphrase", "apikey", "signature")

_user_phrases: frozenset[str] = frozenset()
#: Every sensitive key contains one of these (case-insensitively): text without any of them has
#: no pair to redact, which substring tests tell before the pairs are scanned in Python.
_STEMS = (
    "key",
    "token",
    "secret",
    "pass",
    "pwd",
    "sig",
    "auth",
    "cookie",
    "credential",
    "dsn",
    "mnemonic",
    "jwt",
    "phrase",
)
_stems: tuple[str, ...] = _STEMS
_key_cache: dict[str, bool] = {}
_KEY_CACHE_SIZE = 4096

_CAMEL_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def _words(key: str) -> tuple[str, ...]:
    """``X-BAPI-API-KEY`` → (x, bapi, api, key); ``accessToken`` → (access, token); ``api_key[]`` → (api, key)."""
    if "%" in key:
        key = unquote(key)
    key = _CAMEL.sub(r"\1_\2", _CAMEL_ACRONYM.sub(r"\1_\2", key))
    return tuple(w for w in _NOT_ALNUM.split(key.lower()) if w)


def _decide(key: str) -> bool:
    words = _words(key)
    if not words:
        return False
    if words == ("key",):
        return True
    last = words[-1]
    if last in _WORDS or last.endswith(_GLUED):
        return True
    if words[0] == "x" and len(words) > 1 and last in ("key", "auth"):
        return True  # venue credential headers: X-BM-KEY, X-GATE-KEY, Bitstamp's X-Auth
    for i in range(len(words)):
        suffix = "_".join(words[i:])
        if suffix in _PHRASES or suffix in _user_phrases:
            return True
    return False


def is_sensitive_key(key: str) -> bool:
    """Whether the value under ``key`` (query, header, attribute, label, ``key=value`` text) is a secret.

    Cached per key: after the first call a key costs one dict lookup.
    """
    try:
        return _key_cache[key]
    except KeyError:
        pass
    decision = _decide(key) if isinstance(key, str) else False
    if len(_key_cache) >= _KEY_CACHE_SIZE:
        _key_cache.clear()  # unbounded key sets (ids in keys) must not grow memory
    _key_cache[key] = decision
    return decision


def add_redact_keys(keys: str | Iterable[str]) -> None:
    """Add key names whose values are redacted everywhere (process-wide).

    A name is matched by words like the built-in ones, so ``"desk-pin"`` also covers ``deskPin``
    and ``trader.desk_pin``. A single string is one name. Names are data, never patterns: any
    character is accepted (``"api(key"`` is the words ``api key``). A non-string raises
    ``TypeError`` before anything changes, so a bad call cannot affect later ones.
    """
    global _user_phrases, _stems
    names = [keys] if isinstance(keys, str) else list(keys)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"redact key names must be strings, not {type(name).__name__}: {name!r}")
    added = {"_".join(w) for w in map(_words, names) if w}
    if not added - _user_phrases:
        return
    _user_phrases = _user_phrases | added
    _stems = _STEMS + tuple(sorted({w for phrase in _user_phrases for w in phrase.split("_")}))
    _key_cache.clear()
    _redact_short.cache_clear()


def rules_version() -> frozenset[str]:
    """A value that is a new object whenever :func:`add_redact_keys` changed the rules.

    Caches of redacted values compare it by identity and start over when it differs.
    """
    return _user_phrases


# -- values inside text ------------------------------------------------------------------------

#: ``/bot<id>:<token>`` in a Bot API URL path; the colon may be percent-encoded (uvicorn's
#: access log quotes the path).
_BOT_PATH = re.compile(r"/bot\d+(?::|%3[Aa])[A-Za-z0-9_-]+")
#: A bare bot token, ``123456789:AAH…`` (the secret part is 35 characters).
_BOT_TOKEN = re.compile(r"(?<![A-Za-z0-9_])\d{5,}(?::|%3[Aa])[A-Za-z0-9_-]{30,}")
#: URL user-info: everything between ``scheme://`` and the last ``@`` before the host.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/?#\s]*)@")
#: A credential after an auth scheme. It has a digit or symbol, or is long, so prose such as
#: "basic config" stays readable.
_AUTH_SCHEME = re.compile(
    r"(?i)\b(bearer|basic|token)(\s+)(?:(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{6,}|[A-Za-z]{20,})"
)
#: SQL literals: ``PASSWORD 'x'``, ``IDENTIFIED BY 'x'``.
_SQL_WORDS = ("pass", "secret", "token", "identified")
_SQL_SECRET = re.compile(r"(?i)\b(password|passwd|passphrase|secret|token|identified\s+by)(\s+)'[^']*'")
#: The key and separator of ``key=value``, ``key: value``, ``"key": "value"``. Only the pair's
#: start is matched: the value is read (see _VALUE) only after is_sensitive_key said yes, so a
#: harmless pair such as ``https://host/x?api_key=…`` never hides the pair that follows it.
_KEY_SEP = re.compile(
    r"(?<![A-Za-z0-9_.\-\[\]%])"
    r"(?P<key>[A-Za-z_](?:[A-Za-z0-9_.\-]|%[0-9A-Fa-f]{2})*(?:\[[^\]\s=&]*\])*)"
    r"[\"']?[ \t]*[=:][ \t]*"
)
_VALUE = re.compile(
    r"(?P<q>[\"'])(?P<qv>[^\"'\r\n]*)(?P=q)"
    r"|(?P<scheme>(?i:bearer|basic|digest|token|bot)[ \t]+)?(?P<v>[^\s&,;\"'<>{}\[\]()]+)"
)
_LINE_REST = re.compile(r"[^\"'\r\n]*")
#: The path segment after ``/webhook/`` (optionally after one short word: ``/webhook/telegram/…``).
_SECRET_SEGMENT = re.compile(
    r"(?i)(/(?:webhooks?|hooks?|tokens?|secrets?)/(?:[A-Za-z][A-Za-z_-]{0,15}/)?)([^/?#\s]+)"
)


def _userinfo(match: re.Match[str]) -> str:
    info = match.group(2)
    return match.group(1) + (f"{REDACTED}:{REDACTED}@" if ":" in info else f"{REDACTED}@")


def _redact_pairs(text: str) -> str:
    out: list[str] = []
    pos = 0
    for pair in _KEY_SEP.finditer(text):
        if pair.start() < pos or not is_sensitive_key(pair.group("key")):
            continue  # inside a value already replaced, or a harmless key
        value = _VALUE.match(text, pair.end())
        if value is None:
            continue
        end = value.end()
        if value.group("q") is not None:
            replacement = f"{value.group('q')}{REDACTED}{value.group('q')}"
        elif ":" in text[pair.end("key") : pair.end()] and _words(pair.group("key"))[-1] in (
            "cookie",
            "cookies",
        ):
            # A header line, "Cookie: a=1; session=…": every cookie in it is a credential.
            replacement, end = REDACTED, _LINE_REST.match(text, pair.end()).end()  # type: ignore[union-attr]
        else:
            replacement = (value.group("scheme") or "") + REDACTED
        out.append(text[pos : pair.end()])
        out.append(replacement)
        pos = end
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


def _segment(match: re.Match[str]) -> str:
    value = match.group(2)
    looks_secret = (
        value != REDACTED
        and not value.startswith("{")
        and (len(value) >= 16 or (len(value) >= 8 and any(c.isdigit() for c in value)))
    )
    return match.group(1) + REDACTED if looks_secret else match.group(0)


def _has_stem(low: str) -> bool:
    # A plain loop: any() over a generator costs about twice as much, and this runs per value.
    for stem in _stems:  # noqa: SIM110
        if stem in low:
            return True
    return False


_TOKEN_TAIL = re.compile(r"[A-Za-z0-9_-]{30}")


def _maybe_bot_token(text: str) -> bool:
    """A digit, a colon and 30 token characters somewhere: only then is the full rule worth running."""
    for sep in (":", "%3A", "%3a"):
        i = text.find(sep)
        while i > 0:
            if text[i - 1].isdigit() and _TOKEN_TAIL.match(text, i + len(sep)):
                return True
            i = text.find(sep, i + 1)
    return False


def _redact(text: str) -> str:
    # Each rule runs only when its anchor is in the text (plain substring tests, far cheaper
    # than a regex scan): most values ("GET", "/orders/{symbol}", "BTCUSDT") run no regex.
    low = text.lower()
    colon = ":" in text
    if colon or "%3a" in low:
        if "/bot" in text:
            text = _BOT_PATH.sub(f"/bot{REDACTED}", text)
        if len(text) >= 36 and _maybe_bot_token(text):
            text = _BOT_TOKEN.sub(REDACTED, text)
    if "@" in text and "://" in text:
        text = _USERINFO.sub(_userinfo, text)
    if "bearer" in low or "basic" in low or "token" in low:
        # Before the key rule: in "Authorization: Bearer X" it must see the scheme, not take
        # "Bearer" for the value.
        text = _AUTH_SCHEME.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    if "'" in text and any(w in low for w in _SQL_WORDS):
        text = _SQL_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}'{REDACTED}'", text)
    if (colon or "=" in text) and _has_stem(low):
        text = _redact_pairs(text)
    if "/" in text and ("hook" in low or "/token" in low or "/secret" in low):
        text = _SECRET_SEGMENT.sub(_segment, text)
    return text


#: Span and log attribute values repeat (methods, routes, hosts, symbols): short ones are
#: answered from this cache. Long ones (stack traces, bodies) are scrubbed each time.
_SHORT = 1024
_redact_short = functools.lru_cache(maxsize=8192)(_redact)


def redact_text(text: str) -> str:
    """Redact secrets inside free text (log messages, exception messages, URLs, stack traces)."""
    if len(text) <= _SHORT:
        return _redact_short(text)
    return _redact(text)


def redact_attribute(key: str, value: Any) -> Any:
    """The value to export for attribute ``key``: ``REDACTED`` under a sensitive key, else scrubbed text.

    Returns ``value`` itself (the same object) when nothing had to change, so callers can tell
    cheaply whether a copy is needed. Runs per attribute of every exported span and log record,
    hence the inlined cache lookups.
    """
    sensitive = _key_cache.get(key)
    if sensitive is None:
        sensitive = is_sensitive_key(key)
    if sensitive:
        return value if value == REDACTED else REDACTED
    if type(value) is str:
        cleaned = _redact_short(value) if len(value) <= _SHORT else _redact(value)
        return value if cleaned == value else cleaned
    if isinstance(value, (tuple, list)) and value:
        items = tuple(
            redact_attribute("", v) if isinstance(v, (str, Mapping, tuple, list)) else v for v in value
        )
        return value if all(a is b for a, b in zip(items, value, strict=True)) else items
    if isinstance(value, Mapping):
        # Log attributes and bodies may nest (``extra={"order": {"api_key": ...}}``).
        mapping = {k: redact_attribute(k, v) for k, v in value.items()}
        return value if all(mapping[k] is v for k, v in value.items()) else mapping
    return value


def redact_query(query: str) -> str:
    """``a=1&api_key=x`` → ``a=1&api_key=REDACTED``; unchanged pairs keep their exact encoding."""
    if not query:
        return query
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if not eq:
            continue
        if is_sensitive_key(unquote_plus(name)):
            if value != REDACTED:
                parts[i], changed = f"{name}={REDACTED}", True
            continue
        decoded = unquote_plus(value)
        cleaned = redact_text(decoded)
        if cleaned != decoded:
            parts[i], changed = f"{name}={quote_plus(cleaned, safe=':/')}", True
    return "&".join(parts) if changed else query


def redact_url(url: str) -> str:
    """Redact user:password, secret query values, Telegram bot tokens and webhook secrets in a URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}:{REDACTED}@" + netloc.rsplit("@", 1)[1]
    fragment = redact_query(parts.fragment) if "=" in parts.fragment else parts.fragment
    cleaned = urlunsplit((parts.scheme, netloc, redact_text(parts.path), redact_query(parts.query), fragment))
    return url if cleaned == url else cleaned


# -- the process's own log output --------------------------------------------------------------


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, (int, float, bool)) or arg is None:
        return arg
    text = arg if isinstance(arg, str) else str(arg)
    cleaned = redact_text(text)
    return arg if cleaned == text else cleaned


class RedactingFilter(logging.Filter):
    """Redacts secrets in log records passing a handler: message, arguments, traceback, stack.

    When a secret is found the record is rewritten in place, so every handler after this one
    sees the clean record. Arguments are redacted one by one where that is enough, so
    formatters that read ``record.args`` themselves (uvicorn's access log) keep working;
    otherwise the message is replaced by its redacted text. The traceback is formatted here
    (``record.exc_text``, which ``logging.Formatter`` then uses as is).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place when it carries a secret; never drops it (logging filter protocol)."""
        # A record that cannot be formatted is left to the handler, which reports it as before.
        with contextlib.suppress(Exception):
            self._scrub(record)
        return True

    @staticmethod
    def _scrub(record: logging.LogRecord) -> None:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            args = record.args
            msg = redact_text(record.msg) if isinstance(record.msg, str) else record.msg
            done = False
            if isinstance(args, tuple) and args:
                new_args = tuple(_redact_arg(a) for a in args)
                try:
                    done = redact_text(str(msg) % new_args) == str(msg) % new_args
                except (TypeError, ValueError):
                    done = False
                if done:
                    record.msg, record.args = msg, new_args
            if not done:
                record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            cleaned = redact_text(text)
            if cleaned != text:
                record.exc_text = cleaned
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)


def install_console_redaction() -> None:
    """Add :class:`RedactingFilter` to every log handler that exists now (root and named loggers).

    Covers what the process prints or writes itself: uvicorn's error log with a traceback, its
    access log with the request path and query, the application's own handlers. Handlers added
    later are not covered (the telemetry export path is scrubbed separately).
    """
    loggers: list[Any] = [logging.getLogger()]
    loggers += [
        lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for handler in list(lg.handlers):
            if getattr(handler, "_otel_trader_export", False):
                continue  # scrubbed on the export thread instead
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
