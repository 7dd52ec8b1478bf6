"""Child processes of the demo: started in their own session, tied to our life, always stopped.

Each child gets its own session (so a terminal's Ctrl-C reaches only the runner, which then
stops the children in order) and, on Linux, ``PR_SET_PDEATHSIG``: if the runner dies without
cleaning up — even by SIGKILL — the kernel sends the child SIGTERM. No exit path leaves a
process behind. Starting, waiting and stopping are :mod:`otel_trader.collector.process`'s steps,
the ones the collector's own processes go through.
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from otel_trader.collector.ports import free_ports
from otel_trader.collector.process import http_get, http_ok, port_open, spawn, stop_process, wait_ready

__all__ = ["ChildProcess", "ProcessGroup", "free_port", "http_get"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return free_ports(1)[0]


@dataclass
class ChildProcess:
    """One started child: its name, process, log file and (optional) URL."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; always reaps the process."""
        stop_process(self.process, timeout, kill_timeout=5.0)


class ProcessGroup:
    """The children the demo started; :meth:`stop_all` stops them in reverse start order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[ChildProcess] = []

    def start(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        *,
        url: str = "",
        ports: dict[str, int] | None = None,
    ) -> ChildProcess:
        """Start ``argv`` with ``env``; stdout and stderr go to ``<log_dir>/<name>.log``."""
        log_path = self.log_dir / f"{name}.log"
        process = spawn(argv, env, log_path=log_path, cwd=self.log_dir)
        child = ChildProcess(name, process, log_path, url, ports or {})
        self.children.append(child)
        return child

    def stop_all(self, timeout: float = 10.0) -> None:
        """Stop every child, last started first (services before the collector they export to)."""
        for child in reversed(self.children):
            try:
                child.stop(timeout)
            except Exception:  # keep stopping the others whatever happens to one
                with contextlib.suppress(Exception):
                    child.process.kill()

    def wait_http(
        self, child: ChildProcess, url: str, timeout: float = 30.0, ok: tuple[int, ...] = (200,)
    ) -> None:
        """Wait until ``url`` answers with a status in ``ok``; fail early if ``child`` exits."""
        wait_ready(
            child.process,
            lambda: http_ok(url, ok),
            timeout,
            exited=lambda code: RuntimeError(
                f"{child.name} exited with code {code} while starting; "
                f"last log lines ({child.log_path}):\n{child.log_tail()}"
            ),
            timed_out=lambda: RuntimeError(
                f"{child.name} not ready at {url} after {timeout:.0f}s; log:\n{child.log_tail()}"
            ),
        )

    def wait_port(self, child: ChildProcess, port: int, timeout: float = 15.0) -> None:
        """Wait until something listens on 127.0.0.1:``port``; fail early if ``child`` exits."""
        wait_ready(
            child.process,
            lambda: port_open(port),
            timeout,
            exited=lambda _code: RuntimeError(f"{child.name} exited while starting:\n{child.log_tail()}"),
            timed_out=lambda: RuntimeError(f"{child.name} not listening on {port} after {timeout:.0f}s"),
            interval=0.05,
        )
