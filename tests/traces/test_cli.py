"""``otel-trader traces`` on the recorded demo file: filters, selection, output modes, --follow."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_trader.cli import main as otel_trader_main
from otel_trader.traces.cli import main, parse_duration
from otel_trader.traces.model import Span, read_file, spans_to_json

from .helpers import DEMO_FILE, Command, demo_store

ROOT = Path(__file__).resolve().parents[2]
HEADER = re.compile(r"^trace ([0-9a-f]{32})  ", re.M)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR", "OTEL_TRADER_TRACES_FILE")}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm-256color", **extra)
    return env


def _shown(out: str) -> list[str]:
    return HEADER.findall(out)


def _ids(predicate) -> set[str]:
    return {t.trace_id for t in demo_store().traces() if predicate(t)}


def test_filters_select_the_traces(capsys):
    assert main([str(DEMO_FILE), "--errors"]) == 0
    assert set(_shown(capsys.readouterr().out)) == _ids(lambda t: t.error_count) != set()
    assert main([str(DEMO_FILE), "--service", "mock-exchange"]) == 0
    assert set(_shown(capsys.readouterr().out)) == _ids(lambda t: "mock-exchange" in t.services)
    assert main([str(DEMO_FILE), "--route", "/orders*", "--min-duration", "50ms"]) == 0
    assert set(_shown(capsys.readouterr().out)) == _ids(
        lambda t: any(r.startswith("/orders") for r in t.routes) and t.duration_ns >= 50e6
    )
    assert main([str(DEMO_FILE), "--min-duration", "10s"]) == 0
    captured = capsys.readouterr()
    assert _shown(captured.out) == [] and "no trace matches (7 traces read" in captured.err


def test_most_recent_by_default_slowest_on_request(capsys):
    traces = demo_store().traces()
    assert main([str(DEMO_FILE), "--limit", "2"]) == 0
    captured = capsys.readouterr()
    assert _shown(captured.out) == [t.trace_id for t in traces[-2:]]
    assert "showed the most recent 2 of 7 matching traces" in captured.err
    assert main([str(DEMO_FILE), "--slowest", "--limit", "1"]) == 0
    assert _shown(capsys.readouterr().out) == [max(traces, key=lambda t: t.duration_ns).trace_id]


def test_trace_id_prefix_and_not_found(capsys):
    trace = demo_store().traces()[2]
    assert main([str(DEMO_FILE), "--trace-id", trace.trace_id[:12]]) == 0
    assert _shown(capsys.readouterr().out) == [trace.trace_id]
    assert main([str(DEMO_FILE), "--trace-id", "f" * 32]) == 1
    assert f"trace {'f' * 32} not found" in capsys.readouterr().err


def test_list_mode_prints_one_line_per_trace(capsys):
    assert main([str(DEMO_FILE), "--list", "--limit", "7"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert len(lines) == 7 and all(re.match(r"^[0-9a-f]{32}  \d{4}-", line) for line in lines)


def test_it_is_a_subcommand_of_otel_trader(capsys):
    assert otel_trader_main(["traces", str(DEMO_FILE), "--errors", "--list"]) == 0
    assert len(capsys.readouterr().out.strip().split("\n")) == 2


def test_durations_parse_with_units():
    assert parse_duration("250ms") == 250_000_000
    assert parse_duration("1.5s") == 1_500_000_000
    assert parse_duration("800us") == parse_duration("800µs") == 800_000
    assert parse_duration("2m") == 120_000_000_000
    assert parse_duration("40") == 40_000_000  # a bare number is milliseconds
    with pytest.raises(Exception, match="not a duration"):
        parse_duration("fast")


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_trader.traces", *args],
        capture_output=True, text=True, timeout=60, env=_env(**env), cwd=ROOT,
    )


def test_a_pipe_gets_plain_text_and_a_forced_terminal_gets_colours():
    plain = _run([str(DEMO_FILE), "--errors"])
    assert plain.returncode == 0, plain.stderr
    assert "\x1b" not in plain.stdout and "ERROR" in plain.stdout and "█" in plain.stdout
    assert max(len(line) for line in plain.stdout.splitlines()) <= 120  # not rich's 80 columns, no wrap
    coloured = _run([str(DEMO_FILE), "--errors", "--color", "always"])
    assert "\x1b[" in coloured.stdout


def test_without_a_source_it_reads_the_newest_demo_run_or_says_what_to_do(tmp_path):
    empty = _run([], TMPDIR=str(tmp_path))
    assert empty.returncode == 1 and "--grpc PORT" in empty.stderr and "OTLP_ENDPOINT" in empty.stderr
    run_dir = tmp_path / "otel-trader-demo-abc123"
    run_dir.mkdir()
    shutil.copy(DEMO_FILE, run_dir / "signoz-sink.jsonl")
    found = _run(["--list", "--limit", "100"], TMPDIR=str(tmp_path))
    assert found.returncode == 0 and len(found.stdout.strip().split("\n")) == 7
    configured = _run(["--errors", "--list"], TMPDIR=str(tmp_path), OTEL_TRADER_TRACES_FILE=str(DEMO_FILE))
    assert configured.returncode == 0 and len(configured.stdout.strip().split("\n")) == 2


def test_follow_prints_only_new_traces_once_complete(tmp_path):
    lines = DEMO_FILE.read_text().splitlines(keepends=True)
    path = tmp_path / "sink.jsonl"
    path.write_text("".join(lines[:3]))  # already there: not printed
    before = {s.trace_id for s in read_file(path)}
    expected = _ids(lambda t: t.trace_id not in before)
    command = Command([str(path), "--follow", "--settle", "0.3", "--duration", "60"], env=_env())
    try:
        command.wait_for("Ctrl-C to stop")
        with path.open("a") as f:
            for line in lines[3:]:
                f.write(line[:50])
                f.flush()
                time.sleep(0.05)  # a line arrives in pieces, as the exporter writes it
                f.write(line[50:])
                f.flush()
        command.wait_for(r"^trace [0-9a-f]{32}  ", stdout=True, count=len(expected))
        # A late span of a trace already printed (a slow service's batch): printed again, marked.
        grown = next(t for t in demo_store().traces() if t.trace_id not in before and len(t.spans) > 1)
        root = grown.root
        assert root is not None
        late = Span(grown.trace_id, "0" * 15 + "1", root.span_id, "late.step", 1, root.start_ns, root.end_ns, "late-svc")
        with path.open("a") as f:
            f.write(json.dumps(spans_to_json([late])) + "\n")
        command.wait_for(r"^trace [0-9a-f]{32}  ", stdout=True, count=len(expected) + 1)
        command.proc.send_signal(signal.SIGINT)
        out = command.finish(20)
    finally:
        command.stop()
    err = "".join(command.err)
    assert command.proc.returncode == 0, err
    shown = _shown(out)
    assert set(shown) == expected and len(shown) == len(expected) + 1, (out, err)
    assert shown[-1] == grown.trace_id and shown.count(grown.trace_id) == 2
    reprint = out[out.rindex("updated: 1 more span arrived after it was printed\n") :]
    assert reprint.split("\n")[1].startswith(f"trace {grown.trace_id}") and "late.step" in reprint
    assert "following" in err


def test_follow_stops_after_limit(tmp_path):
    path = tmp_path / "sink.jsonl"
    path.touch()
    command = Command(
        [str(path), "-f", "--settle", "0.2", "--limit", "1", "--errors", "--duration", "60"], env=_env()
    )
    try:
        command.wait_for("Ctrl-C to stop")
        path.write_text(DEMO_FILE.read_text())
        out = command.finish(30)  # exits by itself after one trace
    finally:
        command.stop()
    assert command.proc.returncode == 0, "".join(command.err)
    (shown,) = _shown(out)
    assert shown in _ids(lambda t: t.error_count)
