"""Waterfalls drawn from the recorded demo traces and from synthetic ones (large, deep, hostile)."""

from __future__ import annotations

import io
import re

from otel_trader.traces.model import KIND_CLIENT, KIND_SERVER, Span, Trace
from otel_trader.traces.render import (
    RenderOptions,
    format_duration,
    make_console,
    render_trace,
    span_title,
    to_plain,
)

from .helpers import demo_trace, span, trace_of

ESC = "\x1b"
BLOCK = "█"


def _body(text: str) -> list[str]:
    """The span lines of one rendered trace (the header is two lines without a SigNoz URL)."""
    return text.rstrip("\n").split("\n")[2:]


def _dfs(trace: Trace) -> list[tuple[Span, int]]:
    """Spans in the order a waterfall must show them: depth first, children by start time."""
    children = trace.children()
    out: list[tuple[Span, int]] = []

    def walk(s: Span, depth: int) -> None:
        out.append((s, depth))
        for kid in sorted(children.get(s.span_id, []), key=lambda k: k.start_ns):
            walk(kid, depth + 1)

    for root in trace.roots():
        walk(root, 0)
    return out


def _bar(line: str) -> tuple[int, int]:
    """(first column, length) of the bar on a line."""
    match = re.search(f"{BLOCK}+", line)
    assert match, line
    return match.start(), match.end() - match.start()


def test_spans_follow_their_parents_depth_first_by_start_time():
    trace = demo_trace("POST /orders", error=False)
    lines = _body(to_plain([trace]))
    expected = _dfs(trace)
    assert len(lines) == len(expected) == len(trace.spans) == 9
    for line, (s, depth) in zip(lines, expected, strict=True):
        # The tree prefix is three cells per level ("├─ ", "│  ", "   ").
        title_at = 3 * depth
        assert line[title_at:].startswith(span_title(s)), (line, s.name, depth)
        assert line[:title_at].strip(" │├└─") == "", line
    names = [span_title(s) for s, _ in expected]
    assert names[:4] == ["POST /orders", "trading.order", "POST", "POST /api/v3/order"]
    assert {"INSERT demo_orders", "SET"} <= set(names[4:])  # after the exchange call: SQL, Redis


def test_bars_are_placed_and_sized_by_start_and_duration():
    trace = demo_trace("POST /orders", error=False)
    lines = _body(to_plain([trace], RenderOptions(width=150)))
    axis_start, axis = _bar(lines[0])  # the root spans the whole trace
    assert axis == 50
    for line, (s, _) in zip(lines, _dfs(trace), strict=True):
        start, length = _bar(line)
        expected_start = (s.start_ns - trace.start_ns) / trace.duration_ns * axis
        expected_length = s.duration_ns / trace.duration_ns * axis
        assert abs(start - axis_start - expected_start) <= 1, line
        assert abs(length - max(1.0, expected_length)) <= 1, line
        assert line.rstrip().endswith(format_duration(s.duration_ns)), line


def test_error_spans_are_marked_and_counted():
    trace = demo_trace("POST /orders", error=True)
    text = to_plain([trace])
    assert "1 error" in text.split("\n")[0]
    for line, (s, _) in zip(_body(text), _dfs(trace), strict=True):
        assert line.endswith(" ERROR") == s.is_error, line
    (failed,) = [line for line in _body(text) if line.endswith("ERROR")]
    assert "400" in failed and "127.0.0.1:" in failed  # status and target of the exchange call
    exception = _body(to_plain([demo_trace("GET /test-error")], RenderOptions(width=160)))[0]
    assert "RuntimeError: test error from /test-error" in exception and exception.endswith("ERROR")


def test_key_attributes_show_route_target_statement_and_trading_fields():
    text = to_plain([demo_trace("POST /orders", error=False)], RenderOptions(width=160))
    assert re.search(r"POST /orders +201 ", text)
    assert re.search(r"trading\.order +mock [A-Z]+-USDT (buy|sell) filled", text)
    assert re.search(r"POST +127\.0\.0\.1:\d+/api/v3/order +200", text)
    assert re.search(r"POST /api/v3/order +\[mock-exchange\] +200", text)  # the service boundary
    assert re.search(r"INSERT demo_orders +sqlite", text) and re.search(r"SET +redis", text)
    assert "/tmp/" not in text  # the SQLAlchemy span name is the database path: replaced by the statement


def test_plain_output_has_no_escape_codes_and_colour_output_does():
    trace = demo_trace("POST /orders", error=True)
    plain = to_plain([trace])
    assert ESC not in plain and BLOCK in plain
    buffer = io.StringIO()
    console = make_console(buffer, color="always", width=120)
    console.print(render_trace(trace, RenderOptions(width=120)))
    coloured = buffer.getvalue()
    assert ESC in coloured
    (error_line,) = [line for line in coloured.splitlines() if "ERROR" in line and "400" in line]
    assert "\x1b[31m" in error_line or "\x1b[1;31m" in error_line  # red
    assert re.sub(r"\x1b\[[0-9;]*m", "", coloured) == plain


def test_span_text_cannot_drive_the_terminal():
    root = span("GET /\x1b[2J\x1b]8;;http://evil\x07x\nfake line", 0, 5, kind=KIND_SERVER, **{"url.path": "/\x1b[31m"})
    text = to_plain([trace_of(root)])
    assert ESC not in text and "\x07" not in text
    assert len(text.rstrip("\n").split("\n")) == 3  # header (2) + one span line: no injected line


def test_client_spans_never_show_query_strings():
    root = span("POST /orders", 0, 10, kind=KIND_SERVER)
    call = span(
        "GET", 1, 9, root, kind=KIND_CLIENT,
        **{"http.request.method": "GET", "url.full": "https://api.ex.com/v3/order?signature=s3cr3t&k=1",
           "http.response.status_code": 200},
    )
    text = to_plain([trace_of(root, call)])
    assert "api.ex.com/v3/order" in text and "s3cr3t" not in text and "signature" not in text


def test_signoz_link_per_trace_when_configured():
    trace = demo_trace("GET /test-error")
    linked = to_plain([trace], RenderOptions(signoz_url="https://signoz.example.com/"))
    assert f"SigNoz: https://signoz.example.com/trace/{trace.trace_id}" in linked.split("\n")[2]
    assert "SigNoz" not in to_plain([trace])


def _n_plus_one(n: int) -> tuple[Trace, list[Span]]:
    root = span("GET /report", 0, 2000, kind=KIND_SERVER, **{"http.route": "/report"})
    spans = [root, span("auth", 0, 1, root), span("GET cache", 1, 2, root, **{"db.system": "redis"})]
    selects = []
    for i in range(n):
        slow = i == 700
        s = span(
            "SELECT shop.db", 2 + i * 0.9, 2 + i * 0.9 + (25 if slow else 0.5), root,
            error=i in (5, 1500), **{"db.system": "sqlite", "db.statement": "SELECT * FROM orders WHERE id = ?"},
        )
        selects.append(s)
        spans.append(s)
        spans.append(span("fetch", s.start_ns / 1e6 - 1_700_000_000_000, s.end_ns / 1e6 - 1_700_000_000_000, s))
    spans.append(span("render", 1900, 2000, root))
    return trace_of(*spans), selects


def test_thousands_of_repeated_siblings_collapse_into_one_line():
    trace, selects = _n_plus_one(2000)
    assert len(trace.spans) == 4004
    lines = _body(to_plain([trace]))
    assert len(lines) < 20, "\n".join(lines)
    shown = [line for line in lines if "SELECT orders" in line and "more" not in line]
    # The first three, the slowest, and the failed ones stay visible.
    assert len(shown) == 3 + 1 + 2
    assert sum(line.endswith("ERROR") for line in shown) == 2
    assert any(format_duration(selects[700].duration_ns) in line for line in shown)
    (summary,) = [line for line in lines if "more `SELECT orders` spans" in line]
    hidden = [s for i, s in enumerate(selects) if i not in (0, 1, 2, 5, 700, 1500)]
    total = format_duration(sum(s.duration_ns for s in hidden))
    assert f"… {len(hidden):,} more `SELECT orders` spans, total {total}" in summary
    assert f"+{len(hidden):,} spans below" in summary
    names = [line.strip(" │├└─").split("  ")[0] for line in lines]
    assert names[0] == "GET /report" and "auth" in names and "render" in names[-1]


def test_many_distinct_siblings_are_cut_keeping_the_failed_ones():
    root = span("batch", 0, 1000)
    kids = [span(f"job-{i}", i, i + 1, root, error=i == 900) for i in range(1000)]
    lines = _body(to_plain([trace_of(root, *kids)]))
    assert len(lines) < 40
    assert any("job-900" in line and line.endswith("ERROR") for line in lines)
    assert any(re.search(r"… 9\d\d more spans, total ", line) for line in lines)


def test_a_very_deep_trace_stays_within_the_line_budget():
    spans = [span("level-0", 0, 3000)]
    for i in range(1, 3000):
        spans.append(span(f"level-{i}", i, 3000, spans[-1]))
    lines = _body(to_plain([trace_of(*spans)], RenderOptions(max_lines=50)))
    assert len(lines) == 51 and lines[-1] == "… 2,950 more spans not shown (--max-lines 50)"
    assert all(len(line) <= 120 for line in lines)


def test_ascii_mode_uses_no_unicode():
    text = to_plain([demo_trace("POST /orders", error=False)], RenderOptions(unicode=False))
    assert text.isascii() and "|- " in text and "`- " in text and "#" in text


def test_details_leave_out_what_the_name_says_and_any_credential():
    call = span(
        "ccxt.binance.create_order", 0, 10,
        **{"exchange.id": "binance", "exchange.method": "create_order", "exchange.symbol": "BTC/USDT",
           "exchange.side": "buy", "exchange.api_key": "k3y-value"},
    )
    http = span(
        "POST /api/v3/order", 1, 9, call, kind=KIND_CLIENT,
        **{"http.request.method": "POST", "url.full": "https://api.binance.com/api/v3/order?signature=abc",
           "http.response.status_code": 200},
    )
    lines = _body(to_plain([trace_of(call, http)]))
    assert re.match(r"^ccxt\.binance\.create_order  BTC/USDT buy +█", lines[0]), lines[0]
    assert re.match(r"^└─ POST /api/v3/order  api\.binance\.com  200 +█", lines[1]), lines[1]
    assert "k3y" not in "".join(lines) and "signature" not in "".join(lines)
