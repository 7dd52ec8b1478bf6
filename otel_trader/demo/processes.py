"""Child processes of the demo: started in their own session, tied to our life, always stopped.

Each child gets its own session (so a terminal's Ctrl-C reaches only the runner, which then
stops the children in order) and, on Linux, ``PR_SET_PDEATHSIG``: if the runner dies without
cleaning up — even by SIGKILL — the kernel sends the child SIGTERM. No exit path leaves a
process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ChildProcess", "ProcessGroup", "free_port", "http_get"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are returned, connection errors raise OSError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback URLs only
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except Exception:  # pragma: no cover - best effort; the runner still stops us normally
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


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
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(5)
        else:
            self.process.wait()


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
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.log_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - only calls prctl
            )
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(
                    f"{child.name} exited with code {child.process.returncode} while starting; "
                    f"last log lines ({child.log_path}):\n{child.log_tail()}"
                )
            try:
                status, _ = http_get(url, timeout=1.0)
                if status in ok:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{child.name} not ready at {url} after {timeout:.0f}s; log:\n{child.log_tail()}")

    def wait_port(self, child: ChildProcess, port: int, timeout: float = 15.0) -> None:
        """Wait until something listens on 127.0.0.1:``port``; fail early if ``child`` exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited while starting:\n{child.log_tail()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{child.name} not listening on {port} after {timeout:.0f}s")
