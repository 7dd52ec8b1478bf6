"""``python -m otel_trader.demo --gateways 2``: the demo on the two-tier deployment.

The real command in a subprocess with a bounded load: it prints who routes to whom (an agent,
two gateways, the SigNoz stand-in), its summary counts what entered the tier and what left it,
the stand-in holds what the gateways said they sent, and every process it reported is
gone afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.timeout(240)
def test_demo_with_two_gateways_routes_through_the_tier_and_reconciles(tmp_path: Path) -> None:
    if not (ROOT / "collector" / "bin" / "otelcol-trader").is_file():
        pytest.fail("collector/bin/otelcol-trader is missing: run `make collector`")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTEL_", "OTLP_", "SIGNOZ_"))}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    env.update(PYTHONUNBUFFERED="1", TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "otel_trader.demo", "--gateways", "2", "--requests", "60", "--keep-logs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=200,
    )
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, err[-4000:]

    routes = re.search(r"who routes to whom\n((?:  .*\n)+)", err)
    assert routes, err
    block = routes.group(1)
    gateways = re.findall(r"gateway-(\d) pid \d+ at (127\.0\.0\.1:\d+)", block)
    assert [g for g, _ in gateways] == ["1", "2"], block
    assert f"routes to gateways  {gateways[0][1]}, {gateways[1][1]} (static list)" in block
    assert "traces              by trace id" in block and "tail sampling       after 2s" in block

    # What entered the tier (the agent) and what left it (the gateways) reconcile: every trace
    # is kept in the demo, so everything accepted was sent on. The summary reads "sent" after
    # "accepted", while the services still produce spans, so it can only be larger.
    line = re.search(r"collector accepted (\d+) .* sent (\d+) to the SigNoz stand-in", out)
    assert line, out
    accepted, sent = int(line.group(1)), int(line.group(2))
    assert accepted > 0 and sent >= accepted, line.group(0)

    # The SigNoz stand-in received at least what the gateways had counted as sent by then.
    run_dir = Path(re.search(r"logs: (\S+)", err).group(1))  # type: ignore[union-attr]
    sink = run_dir / "signoz-sink.jsonl"
    spans_per_trace: dict[str, int] = defaultdict(int)
    for raw in sink.read_text().splitlines():
        request = json.loads(raw)
        for rs in request.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    spans_per_trace[span["traceId"]] += 1
    assert sum(spans_per_trace.values()) >= sent

    pids = sorted({int(p) for p in re.findall(r"\bpid (\d+)", err)})
    assert len(pids) >= 6, err  # sink, 2 gateways, agent, exchange, API (+ redis)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    assert not [p for p in pids if _alive(p)]
