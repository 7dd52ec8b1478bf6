"""The main command end to end: runs, exits 0, prints a summary from the metrics, leaves no process.

Every test runs the real command in a subprocess with a bounded load and a hard timeout, and
then checks that each pid the command reported (it prints "pid N" for everything it starts)
is gone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from otel_trader.demo import API_SERVICE, EXCHANGE_SERVICE

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR_BUILT = (ROOT / "collector" / "bin" / "otelcol-trader").is_file()


@pytest.fixture(autouse=True)
def _collector_is_built() -> None:
    # `make test` builds it first; a missing binary must fail here, not switch the demo to its
    # fallback unnoticed (the fallback has its own test below).
    if not COLLECTOR_BUILT:
        pytest.fail("collector/bin/otelcol-trader is missing: run `make collector`")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTEL_", "OTLP_"))}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _pids(text: str) -> list[int]:
    return sorted({int(p) for p in re.findall(r"\bpid (\d+)", text)})


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has exited


def _assert_all_gone(pids: list[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], f"left behind: {[p for p in pids if _alive(p)]}"


def _metric_line(out: str, prefix: str) -> str:
    for line in out.splitlines():
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting with {prefix!r} in:\n{out}")


def _check_summary(out: str) -> None:
    assert "== otel-trader demo: summary (read back from the metrics) ==" in out
    red = _metric_line(out, "trading API  http_requests_total=")
    assert int(re.search(r"http_requests_total=(\d+)", red).group(1)) >= 100
    assert "error rate (4xx+5xx)=" in red
    for route in ("POST    /orders", "GET     /random_sleep", "GET     /test-error", "GET     <unmatched>"):
        line = _metric_line(out, "  " + route)
        assert re.search(r"\d+(\.\d+)?ms|\d+\.\d+s", line), line  # p50/p95/p99 computed
    orders = _metric_line(out, "orders_total by status:")
    assert re.search(r"filled=\d+", orders) and re.search(r"rejected=\d+", orders)
    assert re.search(r"limited=[1-9]", _metric_line(out, "rate_limit_requests_total:"))
    assert "websocket_connections: 0 open now" in out
    assert re.search(r"\(([2-9]|\d\d+) sessions", out)
    assert _metric_line(out, "realized_pnl: total")
    assert _metric_line(out, "spans recorded (otel_sdk_span_started_total):")
    assert "look at:" in out


@pytest.mark.timeout(120)
def test_python_m_demo_without_collector(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "otel_trader.demo", "--requests", "120", "--no-collector"],
        capture_output=True, text=True, timeout=110, env=_env(), cwd=tmp_path,
    )
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    _check_summary(out)
    assert "in-process only" in out and "traces exported: none" in out
    assert "load [" in err and "100%" in err  # the progress bar
    pids = _pids(err)
    assert len(pids) >= 2, err  # mock exchange, trading API (+ redis-server when installed)
    _assert_all_gone(pids)


@pytest.mark.timeout(150)
def test_otel_trader_demo_with_collector(tmp_path):
    """``otel-trader demo``: through the collector when it is built, else the announced fallback."""
    proc = subprocess.run(
        [sys.executable, "-c", "from otel_trader.cli import main; raise SystemExit(main())",
         "demo", "--requests", "120", "--keep-logs"],
        capture_output=True, text=True, timeout=140, env=_env(), cwd=tmp_path,
    )
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    _check_summary(out)
    run_dir = Path(re.search(r"^logs: (.+)$", err, re.M).group(1))
    try:
        _check_collector_run(out, err, run_dir)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.timeout(150)
def test_main_command_falls_back_without_a_collector(tmp_path):
    """No collector binary: the demo says so, exports in-process only, and still exits 0."""
    env = dict(_env(), OTELCOL_BINARY=str(tmp_path / "no-such-otelcol"))
    proc = subprocess.run(
        [sys.executable, "-m", "otel_trader.demo", "--requests", "120"],
        capture_output=True, text=True, timeout=140, env=env, cwd=tmp_path,
    )
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "is not built" in err and "falling back to in-process export only" in err
    _check_summary(out)
    _assert_all_gone(_pids(err))


def _check_collector_run(out: str, err: str, run_dir: Path) -> None:
    exported = _metric_line(out, "traces exported: SDK")
    sdk, accepted, sent = (int(n) for n in re.findall(r"(?:SDK|accepted|sent) (\d+)", exported))
    assert sdk > 100 and sdk == accepted == sent, exported
    via = _metric_line(out, "collector Prometheus endpoint:")
    assert re.search(r"= (\d+) \(in-process: \1\)", via), via  # same count through the collector
    pids = _pids(err)
    assert len(pids) >= 4, err  # sink, collector, mock exchange, trading API
    _assert_all_gone(pids)
    # Traces cross the two services: an exchange server span is the child of an API client span.
    spans = []
    for line in (run_dir / "signoz-sink.jsonl").read_text().splitlines():
        for rs in json.loads(line).get("resourceSpans", []):
            service = next(a["value"]["stringValue"] for a in rs["resource"]["attributes"] if a["key"] == "service.name")
            for ss in rs.get("scopeSpans", []):
                spans += [(service, s) for s in ss.get("spans", [])]
    api_spans = {(s["traceId"], s["spanId"]): s for svc, s in spans if svc == API_SERVICE}
    crossing = [
        s for svc, s in spans
        if svc == EXCHANGE_SERVICE and (s["traceId"], s.get("parentSpanId")) in api_spans
    ]
    assert crossing, "no mock-exchange span has a trading-api parent"
    assert all(api_spans[(c["traceId"], c["parentSpanId"])]["kind"] == 3 for c in crossing)  # CLIENT calls

    def names_in(trace_id: str) -> set[str]:
        return {s["name"] for svc, s in spans if svc == API_SERVICE and s["traceId"] == trace_id}

    # Some crossings are start-up calls (ccxt loading markets); an order's trace holds the request too.
    order_traces = [c["traceId"] for c in crossing if {"POST /orders", "trading.order"} <= names_in(c["traceId"])]
    assert order_traces, {name for c in crossing for name in names_in(c["traceId"])}
    _check_drawn_traces(out)


def _check_drawn_traces(out: str) -> None:
    # The summary ends with two waterfalls drawn from the collector's output: an order's
    # request → exchange call → SQL → Redis, and a trace with an error; then how to follow live.
    tail = out[out.index("\nslowest trace") :]
    slowest, _, error = tail.partition("\na trace with an error:\n")
    assert re.search(r"^POST /orders +201 ", slowest, re.M), slowest
    # The exchange call (ccxt's HTTP span; the venue may refuse the order) and the venue's server span.
    assert re.search(r"POST /api/v3/order +127\.0\.0\.1:\d+ +\d{3} ", slowest), slowest
    assert re.search(r"POST /api/v3/order +\[mock-exchange\]", slowest), slowest
    assert re.search(r"^[├└]─ INSERT demo_orders +sqlite", slowest, re.M), slowest
    if shutil.which("redis-server"):  # the demo starts a private one when it is installed
        assert re.search(r"^[├└]─ SET +redis", slowest, re.M), slowest
    assert re.search(r" ERROR$", error, re.M) and re.search(r"^trace [0-9a-f]{32} .* [\d,]+ errors?$", error, re.M), error
    assert "\x1b" not in tail  # stdout is a pipe here
    assert re.search(r"^  otel-trader traces --follow .*signoz-sink\.jsonl$", tail, re.M), tail


def _start(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_trader.demo", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    return proc, lines


def _wait_for(lines: list[str], text: str, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in line for line in lines):
            return
        assert proc.poll() is None, "".join(lines)
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen:\n{''.join(lines)}")


@pytest.mark.timeout(120)
def test_ctrl_c_during_the_load_stops_everything(tmp_path):
    proc, lines = _start(["--duration", "60", "--no-collector"], tmp_path)
    try:
        _wait_for(lines, "started: mock-exchange", proc)
        time.sleep(1.0)  # inside the load
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    err = "".join(lines)
    assert code == 130, err
    assert "Ctrl-C: stopping everything the demo started" in err
    _assert_all_gone(_pids(err))


@pytest.mark.timeout(150)
def test_keep_running_until_ctrl_c(tmp_path):
    args = ["--requests", "40", "--keep-running"]
    proc, lines = _start(args, tmp_path)
    try:
        _wait_for(lines, "services keep running", proc, timeout=120)
        err = "".join(lines)
        api = re.search(r"trading-api pid \d+ at (http://127\.0\.0\.1:\d+)", err).group(1)
        import urllib.request

        with urllib.request.urlopen(f"{api}/health", timeout=5) as r:  # still serving
            assert r.status == 200
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.2)
    err = "".join(lines)
    assert code == 0, err
    _assert_all_gone(_pids(err))


@pytest.mark.timeout(120)
def test_sigterm_and_sigkill_of_the_runner_leave_nothing(tmp_path):
    # SIGTERM: the same clean stop as Ctrl-C.
    proc, lines = _start(["--duration", "60", "--no-collector"], tmp_path)
    _wait_for(lines, "started: mock-exchange", proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 130
    time.sleep(0.2)
    _assert_all_gone(_pids("".join(lines)))

    # SIGKILL: no clean-up code runs; the children die with their parent (PR_SET_PDEATHSIG).
    proc, lines = _start(["--duration", "60", "--no-collector"], tmp_path)
    _wait_for(lines, "started: mock-exchange", proc)
    pids = _pids("".join(lines))
    assert all(_alive(p) for p in pids)
    proc.kill()
    proc.wait(10)
    _assert_all_gone(pids, timeout=20)


def test_bad_arguments_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "otel_trader.demo", "--requests", "0"],
        capture_output=True, text=True, timeout=30, env=_env(), cwd=tmp_path,
    )
    assert proc.returncode == 2 and "--requests must be at least 1" in proc.stderr
