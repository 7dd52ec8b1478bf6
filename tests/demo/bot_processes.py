"""The demo's mock exchange and trading API (with its bot) as uvicorn processes, for the bot tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_trader.demo.processes import free_port, http_get
from tests.conftest import stop_process


def demo_env(**extra: str) -> dict[str, str]:
    """This environment without telemetry/demo settings, telemetry on with in-process /metrics, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTEL_", "OTLP_", "DEMO_", "MOCK_"))}
    env.update(TELEMETRY_ENABLED="true", TELEMETRY_EXPORTER="none", TELEMETRY_ENV_FILE="none", **extra)
    return env


def start_service(factory: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    """``uvicorn --factory`` on a free loopback port; returns once ``/health`` answers (stopped on failure)."""
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-level", "warning", "--timeout-graceful-shutdown", "3"]
    process = subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if http_get(f"{url}/health")[0] in (200, 503):
                return process, url
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            pytest.fail(f"{factory} did not start:\n{log.read_text()}")
        time.sleep(0.1)
