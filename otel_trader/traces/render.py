# Long because the waterfall's rows, bars, collapsing and footer share one layout model (widths,
# time axis, colours); they change together.
"""Traces as terminal waterfalls: one line per span, indented by parent, a bar on the trace's time axis.

Each line: the tree, the span's name and key attributes (route and status code, the HTTP
target of a client call, a summary of the SQL statement, exchange/symbol/side of trading and
exchange spans, the error), a bar placed and sized by the span's start and duration relative
to the whole trace, the duration, and ``ERROR`` on spans with an error status.

Large traces stay readable: more than ``collapse_threshold`` siblings of the same kind and name
(an N+1 query loop) are shown as the first few, the slowest and the failed ones, plus one line
``… 1,990 more `SELECT orders` spans, total 1.2 s``; a trace is cut at ``max_lines`` lines.
Built with rich :class:`~rich.text.Text`, so a console without colours (not a terminal, or
``--color never``) prints plain text without escape codes. Text from spans (names, attributes)
is stripped of control characters: a client-chosen URL path cannot drive the terminal.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any
from urllib.parse import urlsplit

from rich.console import Console
from rich.text import Text

from otel_trader.redaction import is_sensitive_key
from otel_trader.traces.model import KIND_CLIENT, KIND_SERVER, Span, Trace, paused_gc

__all__ = [
    "RenderOptions",
    "format_duration",
    "make_console",
    "render_trace",
    "signoz_trace_url",
    "span_details",
    "span_title",
    "summary_line",
    "to_plain",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_PALETTE = ("cyan", "magenta", "yellow", "green", "blue", "bright_cyan", "bright_magenta")
_SQL_VERB = re.compile(r"^\s*(?:/\*.*?\*/\s*)?([A-Za-z]+)", re.S)
_SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE)\s+([`\"\[]?[\w.$]+[`\"\]]?)", re.I)
#: Attribute keys shown on trading and exchange spans, in this order (their last segments).
_TRADING_KEYS = ("exchange", "id", "method", "symbol", "side", "type", "status", "result", "error")
_TRADING_PREFIXES = ("trading.", "exchange.", "ccxt.")
_QUOTES = '`"[]'
_NAME_PARTS = re.compile(r"[.\s/:]+")


@dataclass(frozen=True)
class RenderOptions:
    """How :func:`render_trace` lays a trace out."""

    #: Total line width in terminal cells.
    width: int = 120
    #: SigNoz UI base URL: each trace's header links ``{signoz_url}/trace/{trace_id}``.
    signoz_url: str | None = None
    #: Siblings with the same name and kind beyond this many are collapsed into one line.
    collapse_threshold: int = 6
    #: How many of a collapsed group are still shown (the first ones), besides its slowest and failed.
    keep: int = 3
    #: Lines per trace at most (header not counted); the rest is summarised in one line.
    max_lines: int = 300
    #: Box-drawing and block characters; ASCII when the output encoding cannot show them.
    unicode: bool = True


@dataclass
class _Collapsed:
    title: str
    spans: list[Span]
    descendants: int

    @property
    def start_ns(self) -> int:
        return min(s.start_ns for s in self.spans)

    @property
    def end_ns(self) -> int:
        return max(s.end_ns for s in self.spans)


def clean(text: Any) -> str:
    """``text`` without control characters (escape sequences, newlines) that would break a line."""
    return _CONTROL.sub(" ", str(text))


def format_duration(ns: int, unicode: bool = True) -> str:
    """``850 µs``, ``12.3 ms``, ``1.20 s``, ``2m05s``."""
    if ns < 1_000_000:
        return f"{ns // 1000} {'µs' if unicode else 'us'}"
    if ns < 1_000_000_000:
        ms = ns / 1e6
        return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.2f} s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def signoz_trace_url(signoz_url: str, trace_id: str) -> str:
    """The trace's page in the SigNoz UI."""
    return f"{signoz_url.rstrip('/')}/trace/{trace_id}"


@functools.lru_cache(maxsize=4096)
def _sql_summary(statement: str) -> str:
    verb = _SQL_VERB.match(statement)
    if verb is None:
        return ""
    table = _SQL_TABLE.search(statement)
    summary = verb.group(1).upper()
    return f"{summary} {table.group(1).strip(_QUOTES)}" if table else summary


def _status_code(span: Span) -> Any:
    return span.attributes.get("http.response.status_code", span.attributes.get("http.status_code"))


def span_title(span: Span) -> str:
    """The span's name as the waterfall shows it (SQL spans by statement: ``INSERT demo_orders``)."""
    a = span.attributes
    statement = a.get("db.query.summary") or a.get("db.statement") or a.get("db.query.text")
    system = a.get("db.system.name") or a.get("db.system")
    if statement and system and system != "redis":
        summary = a.get("db.query.summary") or _sql_summary(str(statement))
        if summary:
            return clean(summary)
    return clean(span.name)


def _trading_details(attrs: dict[str, Any], name: str) -> list[str]:
    """Values of trading/exchange attributes (``mock BTC-USDT sell filled``), in :data:`_TRADING_KEYS` order.

    Values the span's name already says (``ccxt.binance.create_order``) are left out.
    """
    said = set(_NAME_PARTS.split(name))
    found: dict[str, str] = {}
    for key, value in attrs.items():
        if not key.startswith(_TRADING_PREFIXES) or is_sensitive_key(key):
            continue
        last = key.rsplit(".", 1)[-1]
        if last in _TRADING_KEYS and last not in found and value not in (None, ""):
            found[last] = clean(value)
    values: list[str] = []
    for k in _TRADING_KEYS:
        if k in found and found[k] not in values and found[k] not in said:  # status and result often agree
            values.append(found[k])
    return [" ".join(values)] if values else []


def span_details(span: Span) -> str:
    """The key attributes of ``span`` in a few words (route, status, target, statement, trading, error)."""
    a = span.attributes
    parts: list[str] = []
    status = _status_code(span)
    method = a.get("http.request.method") or a.get("http.method")
    if span.kind == KIND_CLIENT and method:
        url = a.get("url.full") or a.get("http.url")
        if url:
            u = urlsplit(str(url))
            # Host and path only: query strings carry signatures and keys. A name that already
            # holds the path (a URL template, "POST /api/v3/order") leaves just the host.
            path = "" if u.path and u.path in span.name else u.path
            parts.append(f"{u.hostname or ''}{f':{u.port}' if u.port else ''}{path}")
        elif a.get("server.address"):
            parts.append(str(a["server.address"]))
    elif span.kind == KIND_SERVER:
        route = a.get("http.route")
        if route and str(route) not in span.name:
            parts.append(str(route))
        elif not route and a.get("url.path") and str(a["url.path"]) not in span.name:
            parts.append(str(a["url.path"]))
    if status is not None:
        parts.append(str(status))
    system = a.get("db.system.name") or a.get("db.system")
    if system:
        parts.append(str(system))
        statement = a.get("db.statement") or a.get("db.query.text")
        if system == "redis" and statement and str(statement).split(" ", 1)[0] != span.name:
            parts.append(str(statement).split(" ", 1)[0])
    rpc = a.get("rpc.method")
    if rpc:
        parts.append(f"{a.get('rpc.service', '')}/{rpc}".lstrip("/"))
    parts.extend(_trading_details(a, span.name))
    if span.is_error:
        error = a.get("error.type")
        message = span.exception or span.status_message
        if error and str(error) != str(status) and not message.startswith(str(error)):
            parts.append(f"error.type={error}")
        if message:
            parts.append(message if len(message) <= 120 else message[:119] + "…")
    return clean("  ".join(p for p in parts if p))


def _service_styles(trace: Trace) -> dict[str, str]:
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(trace.services)}


def _descendants(spans: Iterable[Span], children: dict[str, list[Span]]) -> int:
    """Spans below ``spans`` (iterative: a trace can be thousands of levels deep)."""
    count = 0
    stack = list(spans)
    while stack:
        kids = children.get(stack.pop().span_id, ())
        count += len(kids)
        stack.extend(kids)
    return count


def _plan(
    kids: list[Span], children: dict[str, list[Span]], options: RenderOptions
) -> list[Span | _Collapsed]:
    """Children to draw: repeated siblings collapsed, keeping the first, the slowest and the failed."""
    if len(kids) <= options.collapse_threshold:
        return list(kids)
    groups: dict[tuple[str, int, str], list[Span]] = {}
    for s in kids:
        groups.setdefault((s.service, s.kind, span_title(s)), []).append(s)
    shown: set[int] = set()
    collapsed_by_span: dict[int, _Collapsed] = {}
    for (_, _, title), members in groups.items():
        if len(members) <= options.collapse_threshold:
            shown.update(id(m) for m in members)
            continue
        keep = {id(m) for m in members[: options.keep]}
        keep.add(id(max(members, key=lambda m: m.duration_ns)))
        keep.update(id(m) for m in [m for m in members if m.is_error][: options.keep])
        shown |= keep
        rest = [m for m in members if id(m) not in keep]
        group = _Collapsed(f"`{title}`", rest, _descendants(rest, children))
        for m in rest:
            collapsed_by_span[id(m)] = group
    out: list[Span | _Collapsed] = []
    emitted: set[int] = set()
    for s in kids:
        if id(s) in shown:
            out.append(s)
        else:
            group = collapsed_by_span[id(s)]
            if id(group) not in emitted:
                emitted.add(id(group))
                out.append(group)
    # Many distinct names (no repeats to fold): keep the first ones and the failed ones.
    limit = max(options.collapse_threshold * 4, options.keep + 1)
    if len(out) > limit:
        head, tail = out[: limit - 1], out[limit - 1 :]
        failed = [x for x in tail if isinstance(x, Span) and x.is_error][: options.keep]
        spans: list[Span] = []
        for x in tail:
            if isinstance(x, _Collapsed):
                spans.extend(x.spans)
            elif not any(x is f for f in failed):
                spans.append(x)
        out = [*head, *failed, _Collapsed("", spans, _descendants(spans, children))]
    return out


def _bar(start_ns: int, end_ns: int, trace: Trace, width: int) -> tuple[int, int]:
    """(offset, length) in cells of a bar for [start, end] on the trace's axis of ``width`` cells."""
    total = trace.duration_ns or 1
    begin = round((start_ns - trace.start_ns) / total * width)
    end = round((end_ns - trace.start_ns) / total * width)
    begin = min(max(begin, 0), width - 1)
    return begin, max(1, min(end, width) - begin)


class _Layout:
    def __init__(self, options: RenderOptions) -> None:
        self.options = options
        self.duration_w = 9
        self.status_w = 6
        self.bar_w = max(10, min(60, options.width // 3))
        self.label_w = max(20, options.width - self.bar_w - self.duration_w - self.status_w - 3)
        u = options.unicode
        self.tee, self.elbow, self.pipe, self.blank = (
            ("├─ ", "└─ ", "│  ", "   ") if u else ("|- ", "`- ", "|  ", "   ")
        )
        self.block, self.light = ("█", "░") if u else ("#", "-")
        self.ellipsis = "…" if u else "..."
        self.cut = "…" if u else "~"


def _line(
    layout: _Layout,
    prefix: str,
    title: str,
    details: str,
    bar: tuple[int, int],
    bar_char: str,
    duration: str,
    *,
    style: str,
    error: bool,
    bar_optional: bool = False,
) -> Text:
    label = Text(no_wrap=True, overflow="ellipsis")
    label.append(prefix, style="dim")
    label.append(title, style="bold red" if error else "bold")
    if details:
        label.append("  " + details, style="red" if error else "dim")
    # A summary line too long for its column gives up its bar rather than its words.
    draw_bar = not (bar_optional and label.cell_len > layout.label_w)
    width = layout.label_w if draw_bar else layout.label_w + 1 + layout.bar_w
    if label.cell_len > width:
        label.truncate(width - 1, overflow="crop")
        label.append(layout.cut, style="dim")
    label.pad_right(width - label.cell_len)
    line = label
    if draw_bar:
        offset, length = bar
        line.append(" ")
        line.append(" " * offset)
        line.append(bar_char * length, style="red" if error else style)
        line.append(" " * (layout.bar_w - offset - length))
    line.append(" ")
    line.append(duration.rjust(layout.duration_w), style="red" if error else "")
    line.append(" ")
    line.append("ERROR" if error else "", style="bold red")
    line.rstrip()
    return line


def _header(trace: Trace, options: RenderOptions) -> list[Text]:
    root = trace.root
    head = Text(no_wrap=True, overflow="ellipsis")
    head.append("trace ", style="dim")
    head.append(trace.trace_id, style="bold")
    head.append("  ")
    head.append(span_title(root) if root is not None else "?", style="bold")
    if root is not None and root.parent_id:
        head.append(" (root span not received)", style="yellow")
    count = len(trace.spans)
    head.append(
        f"  {format_duration(trace.duration_ns, options.unicode)}  {count:,} span{'s' if count != 1 else ''}"
    )
    errors = trace.error_count
    if errors:
        head.append(f"  {errors:,} error{'s' if errors != 1 else ''}", style="bold red")
    arrow = " → " if options.unicode else " -> "
    when = datetime.fromtimestamp(trace.start_ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    where = Text(no_wrap=True, overflow="ellipsis")
    where.append("  " + arrow.join(clean(s) for s in trace.services), style="cyan")
    where.append(f"  {when}", style="dim")
    lines = [head, where]
    if options.signoz_url:
        url = signoz_trace_url(options.signoz_url, trace.trace_id)
        lines.append(Text.assemble(("  SigNoz: ", "dim"), (url, f"link {url}"), no_wrap=True))
    return lines


def render_trace(trace: Trace, options: RenderOptions | None = None) -> Text:
    """The waterfall of ``trace``: a header line (plus the SigNoz link), then one line per span."""
    with paused_gc():  # grouping a large trace makes many short-lived, acyclic objects
        return _render(trace, options or RenderOptions())


def _render(trace: Trace, options: RenderOptions) -> Text:
    layout = _Layout(options)
    styles = _service_styles(trace)
    children = trace.children()
    lines = _header(trace, options)
    body = 0
    drawn = 0
    # (item, prefix for its own line, prefix for its children, parent's service)
    roots = _plan(trace.roots(), children, options)
    stack: list[tuple[Span | _Collapsed, str, str, str | None]] = [(r, "", "", None) for r in reversed(roots)]
    while stack:
        item, prefix, child_prefix, parent_service = stack.pop()
        if body >= options.max_lines:
            hidden = len(trace.spans) - drawn
            lines.append(
                Text(
                    f"{layout.ellipsis} {hidden:,} more spans not shown (--max-lines {options.max_lines})",
                    style="dim",
                )
            )
            break
        body += 1
        if isinstance(item, _Collapsed):
            drawn += len(item.spans) + item.descendants
            total_ns = sum(s.duration_ns for s in item.spans)
            errors = sum(1 for s in item.spans if s.is_error)
            what = f"{item.title} spans" if item.title else "spans"
            title = (
                f"{layout.ellipsis} {len(item.spans):,} more {what}, "
                f"total {format_duration(total_ns, options.unicode)}"
            )
            notes = []
            if errors:
                notes.append(f"{errors:,} failed")
            if item.descendants:
                notes.append(f"+{item.descendants:,} spans below")
            lines.append(
                _line(
                    layout,
                    prefix,
                    title,
                    ", ".join(notes),
                    _bar(item.start_ns, item.end_ns, trace, layout.bar_w),
                    layout.light,
                    "",
                    style="dim",
                    error=False,
                    bar_optional=True,
                )
            )
            continue
        span = item
        drawn += 1
        details = span_details(span)
        if parent_service is not None and span.service != parent_service:
            details = f"[{clean(span.service)}]  {details}" if details else f"[{clean(span.service)}]"
        if span.parent_id and trace.span(span.parent_id) is None:
            details = f"{details}  (parent {span.parent_id[:8]} not received)".strip()
        lines.append(
            _line(
                layout,
                prefix,
                span_title(span),
                details,
                _bar(span.start_ns, span.end_ns, trace, layout.bar_w),
                layout.block,
                format_duration(span.duration_ns, options.unicode),
                style=styles.get(span.service, "cyan"),
                error=span.is_error,
            )
        )
        kids = children.get(span.span_id)
        if not kids:
            continue
        planned = _plan(kids, children, options)
        # Very deep traces: the indentation stops growing past ~half the label.
        if len(child_prefix) > layout.label_w // 2:
            child_prefix = layout.ellipsis + child_prefix[-(layout.label_w // 2 - 3) :]
        for i in range(len(planned) - 1, -1, -1):
            last = i == len(planned) - 1
            stack.append(
                (
                    planned[i],
                    child_prefix + (layout.elbow if last else layout.tee),
                    child_prefix + (layout.blank if last else layout.pipe),
                    span.service,
                )
            )
    text = Text("\n", no_wrap=True, overflow="ellipsis").join(lines)
    return text


def summary_line(trace: Trace, options: RenderOptions | None = None) -> Text:
    """One line for ``trace`` (``--list``): id, start, duration, spans, errors, root span, services."""
    options = options or RenderOptions()
    root = trace.root
    errors = trace.error_count
    arrow = " → " if options.unicode else " -> "
    when = datetime.fromtimestamp(trace.start_ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(trace.trace_id, style="bold")
    line.append(f"  {when}", style="dim")
    count = len(trace.spans)
    plural = "s" if count != 1 else " "
    line.append(f"  {format_duration(trace.duration_ns, options.unicode):>8}  {count:>5,} span{plural}")
    line.append(f"  {f'{errors:,} errors' if errors else '':>9}", style="bold red")
    line.append("  ")
    line.append(span_title(root) if root is not None else "?", style="bold red" if errors else "bold")
    line.append("  " + arrow.join(clean(s) for s in trace.services), style="cyan")
    line.truncate(options.width, overflow="ellipsis")
    return line


def make_console(file: IO[str] | None = None, *, color: str = "auto", width: int | None = None) -> Console:
    """A console for waterfalls: colours on a terminal (``auto``), ``always`` or ``never``.

    Off a terminal the width is ``width`` or 120 (rich would assume 80), and nothing but text
    is written. rich honours ``NO_COLOR`` and ``FORCE_COLOR`` under ``auto``.
    """
    file = file if file is not None else sys.stdout
    kwargs: dict[str, Any] = {"file": file, "highlight": False, "markup": False, "emoji": False}
    if color == "always":
        kwargs["force_terminal"] = True
    elif color == "never":
        kwargs.update(force_terminal=False, color_system=None, no_color=True)
    console = Console(**kwargs)
    if width:
        console.width = width
    elif not console.is_terminal:
        console.width = 120
    return console


def to_plain(traces: Iterable[Trace], options: RenderOptions | None = None) -> str:
    """Waterfalls of ``traces`` as plain text (no escape codes), a blank line between traces."""
    import io

    options = options or RenderOptions()
    buffer = io.StringIO()
    console = make_console(buffer, color="never", width=options.width)
    for i, trace in enumerate(traces):
        if i:
            console.print()
        console.print(render_trace(trace, options), crop=True, soft_wrap=False)
    return buffer.getvalue()
