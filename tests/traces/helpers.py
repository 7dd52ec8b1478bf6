"""Shared data of the traces tests: the recorded demo traces and a builder of synthetic spans.

``data/demo-traces.jsonl`` is real output of the SigNoz stand-in's ``file`` exporter after a
demo run (our SDK → otelcol-trader → sink), trimmed to seven traces by ``record_fixture.py``;
it also holds one metrics line and one logs line, as the real file does.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from otel_trader.traces.model import Span, Trace, TraceStore, read_file

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
DEMO_FILE = DATA / "demo-traces.jsonl"

_ids = itertools.count(1)


def demo_store() -> TraceStore:
    """Every trace of the recorded demo file."""
    store = TraceStore()
    store.add(read_file(DEMO_FILE))
    return store


def demo_trace(root_name: str, *, error: bool | None = None) -> Trace:
    """The recorded trace whose root span is ``root_name`` (with/without an error span)."""
    for trace in demo_store().traces():
        root = trace.root
        if root is not None and root.name == root_name and (error is None or bool(trace.error_count) == error):
            return trace
    raise AssertionError(f"no {root_name!r} trace in {DEMO_FILE}")


def span(
    name: str,
    start_ms: float,
    end_ms: float,
    parent: Span | None = None,
    *,
    trace_id: str = "ab" * 16,
    service: str = "svc",
    kind: int = 1,
    error: bool = False,
    **attributes: object,
) -> Span:
    """A synthetic span; times in milliseconds from an arbitrary epoch."""
    base = 1_700_000_000_000_000_000
    return Span(
        trace_id=trace_id,
        span_id=f"{next(_ids):016x}",
        parent_id=parent.span_id if parent is not None else "",
        name=name,
        kind=kind,
        start_ns=base + int(start_ms * 1e6),
        end_ns=base + int(end_ms * 1e6),
        service=service,
        attributes=dict(attributes),
        status_code=2 if error else 0,
    )


def trace_of(*spans: Span) -> Trace:
    """A :class:`Trace` holding ``spans``."""
    store = TraceStore()
    store.add(spans)
    (trace,) = store.traces()
    return trace


class Command:
    """``python -m otel_trader.traces ...`` with stdout and stderr read as they come."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        drop = ("OTEL_", "OTLP_", "FORCE_COLOR", "NO_COLOR")
        base = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otel_trader.traces", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=lambda: self.out.extend(iter(self.proc.stdout.readline, "")), daemon=True),  # type: ignore[union-attr]
            threading.Thread(target=lambda: self.err.extend(iter(self.proc.stderr.readline, "")), daemon=True),  # type: ignore[union-attr]
        ]
        for reader in self._readers:
            reader.start()

    def wait_for(self, pattern: str, timeout: float = 30.0, *, stdout: bool = False, count: int = 1) -> re.Match[str]:
        """Until ``pattern`` appears ``count`` times on stderr (or stdout); the last match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            matches = list(re.finditer(pattern, "".join(self.out if stdout else self.err), re.M))
            if len(matches) >= count:
                return matches[count - 1]
            assert self.proc.poll() is None, "".join(self.err)
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} not printed {count}×:\n{''.join(self.out)}\n{''.join(self.err)}")

    def finish(self, timeout: float) -> str:
        """Wait for the command to exit; everything it printed on stdout."""
        self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return "".join(self.out)

    def stop(self) -> None:
        """Kill it if still running."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
