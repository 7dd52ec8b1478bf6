"""Render an :class:`ErrorReport` as a Telegram HTML message of at most 4096 characters.

Everything user-controlled is redacted (:func:`otel_trader.redaction.redact_text`) and then
HTML-escaped. Telegram counts the limit in UTF-16 code units after parsing entities; the raw HTML
measured in UTF-16 units is never shorter, so measuring that is safe. When too long, text is cut
in the middle: for the stack the tail (the innermost frames, where the error is) is kept.
"""

from __future__ import annotations

import html
import linecache
import logging
import os
import re
import sys
from datetime import datetime, timezone

from otel_trader.redaction import REDACTED, is_sensitive_key, redact_text
from otel_trader.telegram.dedup import FollowUp
from otel_trader.telegram.report import ErrorReport
from otel_trader.traces import local_command

__all__ = ["TELEGRAM_LIMIT", "format_follow_up", "format_report", "telegram_length", "to_plain_text"]

TELEGRAM_LIMIT = 4096
#: Room the stack gets at least before header fields are shortened further.
_MIN_STACK = 600
_EMOJI = {logging.CRITICAL: "🚨", logging.ERROR: "🔴", logging.WARNING: "⚠️"}


# redact_text's key=value rule turns "Authorization: Bearer <token>" into "Authorization: REDACTED
# <token>" before its bearer rule can see the scheme, leaving the token. Scrubbing schemes first
# closes that gap until redaction.py orders its rules the other way round.
# A credential has a digit or symbol, or is long: "basic config" in prose stays readable.
_AUTH_SCHEME = re.compile(
    r"(?i)\b(bearer|basic|token)\s+"
    r"(?:(?=[A-Za-z]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{6,}|[A-Za-z]{20,})"
)


def scrub(text: str) -> str:
    """:func:`redact_text`, with credentials after an auth scheme removed first."""
    return redact_text(_AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", text))


def telegram_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def escape(text: str) -> str:
    """HTML-escape text for Telegram (``<``, ``>``, ``&``; quotes are fine outside attributes)."""
    return html.escape(text, quote=False)


def fit_middle(text: str, max_units: int, *, head_share: float = 0.3, lines: bool = False) -> str:
    """Escape ``text``, cutting its middle so the escaped result is at most ``max_units`` long.

    ``head_share`` of what is kept comes from the start, the rest from the end. ``lines`` snaps
    the cut to line boundaries when that costs little.
    """
    escaped = escape(text)
    if telegram_length(escaped) <= max_units:
        return escaped
    if max_units <= 0:
        return ""

    def build(keep: int) -> str:
        head_n = int(keep * head_share)
        head, tail = text[:head_n], text[len(text) - (keep - head_n) :] if keep > head_n else ""
        if lines:
            # Whole lines read better; only snap when it loses less than half of a part.
            cut = head.rfind("\n")
            if cut > len(head) // 2:
                head = head[: cut + 1]
            cut = tail.find("\n")
            if 0 <= cut < len(tail) // 2:
                tail = tail[cut + 1 :]
        omitted = len(text) - len(head) - len(tail)
        marker = f"\n… {omitted} characters cut …\n" if lines else f" … [{omitted} characters cut] … "
        return escape(head) + marker + escape(tail)

    low, high = 0, len(text)
    best = ""
    while low <= high:
        mid = (low + high) // 2
        candidate = build(mid)
        if telegram_length(candidate) <= max_units:
            best, low = candidate, mid + 1
        else:
            high = mid - 1
    if telegram_length(best) > max_units:  # even the marker alone does not fit
        return escape(text[: max(0, max_units // 6)])
    return best


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


_PREFIXES = sorted({p for p in (*sys.path, os.getcwd()) if p and os.path.isabs(p)}, key=len, reverse=True)


def short_path(filename: str) -> str:
    """Drop the sys.path / working-directory prefix: ``site-packages/x/y.py`` → ``x/y.py``."""
    for prefix in _PREFIXES:
        if filename.startswith(prefix.rstrip(os.sep) + os.sep):
            return filename[len(prefix.rstrip(os.sep)) + 1 :]
    return filename


def stack_text(report: ErrorReport) -> str:
    """Traceback text, innermost frame last, with source lines (read here, in the sender)."""
    out = []
    if report.frames_omitted:
        out.append(f"… {report.frames_omitted} outer frames omitted")
    for filename, lineno, function in report.frames:
        out.append(f'File "{short_path(filename)}", line {lineno}, in {function}')
        source = linecache.getline(filename, lineno).strip()
        if source:
            out.append(f"    {source}")
    return scrub("\n".join(out))


def _context_value(key: str, value: str) -> str:
    return REDACTED if is_sensitive_key(key) else scrub(value)


def _header(
    report: ErrorReport, service: str, environment: str, signoz_url: str | None, scale: float
) -> list[str]:
    def cap(n: int) -> int:
        return max(20, int(n * scale))

    emoji = _EMOJI.get(report.level, "ℹ️")
    lines = [
        f"{emoji} <b>{escape(report.level_name)}</b> in <b>{fit_middle(service, cap(100))}</b> "
        f"[{fit_middle(environment, cap(60))}]",
        f"🕒 {_time(report.timestamp)}",
    ]
    if report.log_message is not None:
        lines.append(f"<b>Log:</b> {fit_middle(scrub(report.log_message), cap(500))}")
    lines.append(
        f"<b>{fit_middle(report.error_type, cap(200))}</b>: {fit_middle(scrub(report.message), cap(1000))}"
    )
    if report.cause:
        where = ""
        if report.cause_frame is not None:
            filename, lineno, function = report.cause_frame
            where = f" at <code>{fit_middle(short_path(filename), cap(200))}:{lineno}</code> in {fit_middle(function, cap(80))}"
        lines.append(f"↳ caused by {fit_middle(scrub(report.cause), cap(300))}{where}")
    request = report.request
    if request is not None:
        client = f" · client <code>{escape(request.client)}</code>" if request.client else ""
        lines.append(
            f"<b>Request:</b> <code>{escape(request.method)} {fit_middle(scrub(request.route), cap(200))}</code>"
            f" → {request.status}{client}"
        )
    if report.trace_id:
        trace_id = escape(report.trace_id)
        # The terminal command holds the id, so without SigNoz it is the whole line.
        local = f"<code>{escape(local_command(report.trace_id))}</code>"
        if signoz_url:
            href = html.escape(f"{signoz_url.rstrip('/')}/trace/{report.trace_id}", quote=True)
            lines.append(f'<b>Trace:</b> <a href="{href}">{trace_id}</a>')
            lines.append(f"<b>Locally:</b> {local}")
        else:
            lines.append(f"<b>Trace:</b> {local}")
    items = report.context[: max(1, int(10 * scale))]
    if items:
        lines.append("<b>Context:</b>")
        for key, value in items:
            lines.append(
                f"• {fit_middle(scrub(key), cap(50))}: {fit_middle(_context_value(key, value), cap(200))}"
            )
    return lines


def _assemble(header: list[str], stack: str, limit: int) -> str:
    text = "\n".join(header)
    if not stack:
        return text
    opening, closing = "\n<b>Stack</b> (innermost last):\n<pre>", "</pre>"
    budget = limit - telegram_length(text) - telegram_length(opening + closing)
    return text + opening + fit_middle(stack, budget, head_share=0.15, lines=True) + closing


def format_report(
    report: ErrorReport,
    *,
    service: str,
    environment: str,
    signoz_url: str | None = None,
    limit: int = TELEGRAM_LIMIT,
) -> str:
    """The HTML message for ``report``: at most ``limit`` UTF-16 units, everything escaped."""
    stack = stack_text(report)
    for scale in (1.0, 0.5, 0.25, 0.1):
        header = _header(report, service, environment, signoz_url, scale)
        if telegram_length("\n".join(header)) <= limit - (_MIN_STACK if stack else 0):
            return _assemble(header, stack, limit)
    # Unreachable with the caps above; kept so an oversized message can never be produced.
    return fit_middle(scrub(f"{report.level_name} {report.error_type}: {report.message}"), limit)


def format_follow_up(follow: FollowUp, *, service: str, environment: str, limit: int = TELEGRAM_LIMIT) -> str:
    """The "N more like this" message closing a dedup window."""
    first = follow.first
    lines = [
        f"🔁 <b>{follow.count} more like this</b> in the last {_duration(follow.window_seconds)} · "
        f"<b>{fit_middle(service, 100)}</b> [{fit_middle(environment, 60)}]",
    ]
    if first is not None:
        lines.append(f"<b>{fit_middle(first.error_type, 200)}</b>: {fit_middle(scrub(first.message), 600)}")
        if first.request is not None:
            lines.append(
                f"<b>Request:</b> <code>{escape(first.request.method)} {fit_middle(scrub(first.request.route), 200)}</code>"
            )
        if first.frames:
            filename, lineno, function = first.frames[-1]
            lines.append(
                f"at <code>{fit_middle(short_path(filename), 300)}:{lineno}</code> in {fit_middle(function, 100)}"
            )
        lines.append(f"first reported {_time(first.timestamp)}")
    return fit_middle_html("\n".join(lines), limit)


def fit_middle_html(text: str, limit: int) -> str:
    """Last resort for an already-built message: fall back to plain text when too long."""
    if telegram_length(text) <= limit:
        return text
    return fit_middle(to_plain_text(text), limit)


_TAG = re.compile(r"<[^>]+>")


def to_plain_text(html_text: str) -> str:
    """The message without markup (for a retry without ``parse_mode``)."""
    return html.unescape(_TAG.sub("", html_text))
