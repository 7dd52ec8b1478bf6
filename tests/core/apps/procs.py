"""Run test apps as real processes (uvicorn, opentelemetry-instrument, plain python) on 127.0.0.1.

Output goes to files, not pipes, so a chatty child can never block on a full pipe; every process
is stopped (SIGTERM, then SIGKILL) by :class:`Launcher.stop_all`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from otel_trader.collector.process import port_open
from tests.support import free_port, stop_process

APPS = Path(__file__).resolve().parent
ROOT = APPS.parents[2]
#: Prefixes of variables that would leak the test runner's telemetry settings into a child.
_OURS = ("TELEMETRY_", "OTLP_", "OTEL_", "TELEGRAM_", "FASTAPI_OTEL")
_NAMES = ("SERVICE_NAME", "SERVICE_VERSION", "ENVIRONMENT", "DEPLOYMENT_ENVIRONMENT", "PYTHONPATH")


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without telemetry settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS) and k not in _NAMES}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def executable(name: str) -> str:
    """Absolute path of a console script installed next to this Python."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run `pip install -e .[dev]`")
    return found


@dataclass
class AppProcess:
    """One child process and the files its output goes to."""

    process: subprocess.Popen[bytes]
    port: int | None
    out: Path
    err: Path
    exit_seconds: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the app accepts connections; fail with its stderr if it died or hung."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"app exited with {self.process.returncode}:\n{self.stderr()[-4000:]}")
            if port_open(self.port or 0):
                return
            time.sleep(0.05)
        raise AssertionError(f"app not listening on {self.port} after {timeout}s:\n{self.stderr()[-4000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> float:
        """Send ``sig`` and wait for exit (SIGKILL after ``timeout``); return the seconds it took."""
        start = time.monotonic()
        stop_process(self.process, timeout, sig=sig)
        self.exit_seconds = time.monotonic() - start
        return self.exit_seconds


@dataclass
class Launcher:
    """Starts processes in ``workdir``'s files; ``stop_all`` ends whatever is still running."""

    workdir: Path
    started: list[AppProcess] = field(default_factory=list)

    def start(self, args: list[str], env: dict[str, str], port: int | None = None) -> AppProcess:
        """Start ``args`` with cwd = the apps directory (``opentelemetry-instrument`` adds cwd to PYTHONPATH)."""
        n = len(self.started)
        out, err = self.workdir / f"proc{n}.out", self.workdir / f"proc{n}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(args, cwd=APPS, env=env, stdout=stdout, stderr=stderr)
        app = AppProcess(process=process, port=port, out=out, err=err)
        self.started.append(app)
        return app

    def uvicorn(self, module: str, env: dict[str, str], *, instrument: bool = False, extra: tuple[str, ...] = ()) -> AppProcess:
        """``[opentelemetry-instrument] uvicorn module:app`` on a free loopback port, started and ready."""
        port = free_port()
        env = {**env, "APP_PORT": str(port)}
        args = [executable("uvicorn"), f"{module}:app", "--host", "127.0.0.1", "--port", str(port), *extra]
        if instrument:
            args = [executable("opentelemetry-instrument"), *args]
        app = self.start(args, env, port)
        app.wait_ready()
        return app

    def stop_all(self) -> None:
        for app in self.started:
            if app.process.poll() is None:
                app.process.kill()
                app.process.wait(10)
