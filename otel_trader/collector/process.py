"""Supervising a child process: started with a bounded wait for its health URL, stopped with SIGTERM
then SIGKILL, always reaped, and killed with the parent on Linux.

:class:`ManagedProcess` is a collector binary; the functions under it (:func:`spawn`,
:func:`wait_ready`, :func:`stop_process`, the probes :func:`http_ok` and :func:`port_open`) are
the same steps for any child, shared with the demo's processes and the tests.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from otel_trader.collector.binary import CollectorError


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are returned, connection errors raise OSError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URLs
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")


def die_with_parent() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGTERM the child when this process dies.

    Even if the Python parent is SIGKILLed (a test runner killed by a timeout), the collector
    it started does not linger holding ports. Only for a child started from the main thread:
    Linux sends the signal when the *thread* that forked the child ends (prctl(2),
    PR_SET_PDEATHSIG), so a collector restarted by a helper thread would be stopped as soon as
    that thread returned. Children of other threads are stopped by :meth:`stop` only.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    parent = os.getpid()

    def preexec() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except Exception:  # pragma: no cover - best effort; stop() still stops it normally
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def http_ok(url: str, ok: tuple[int, ...] = (200,), timeout: float = 1.0) -> bool:
    """One probe: whether ``url`` answers with a status in ``ok`` (a connection error is ``False``)."""
    try:
        status, _ = http_get(url, timeout=timeout)
    except OSError:
        return False
    return status in ok


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """One probe: whether something accepts TCP connections on ``host:port``."""
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def spawn(
    argv: list[str],
    env: Mapping[str, str],
    *,
    log_path: Path | None = None,
    cwd: Path | None = None,
    header: str = "",
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, tied to this process's life (:func:`die_with_parent`).

    Its stdout and stderr are appended to ``log_path`` (after ``header``), or inherited when there
    is none; stdin is closed. The child keeps its own descriptor of the log. Raises ``OSError``
    when it cannot be started.
    """
    log: IO[bytes] | None = None
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed below; the child keeps its own descriptor
        if header:
            log.write(header.encode())
            log.flush()
    try:
        return subprocess.Popen(
            argv,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT if log is not None else None,
            cwd=cwd,
            # Own session: a terminal's Ctrl-C reaches only us, and we stop it in order.
            start_new_session=True,
            preexec_fn=die_with_parent(),  # noqa: PLW1509 - only calls prctl
        )
    finally:
        if log is not None:
            log.close()


def wait_ready(
    process: subprocess.Popen[Any] | None,
    ready: Callable[[], bool],
    timeout: float,
    *,
    exited: Callable[[int | None], BaseException],
    timed_out: Callable[[], BaseException],
    interval: float = 0.1,
) -> None:
    """Poll ``ready()`` every ``interval`` s until it is true.

    Raises ``exited(returncode)`` as soon as ``process`` has exited (or was never started), and
    ``timed_out()`` once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while True:
        if process is None or process.poll() is not None:
            raise exited(None if process is None else process.returncode)
        if ready():
            return
        if time.monotonic() >= deadline:
            raise timed_out()
        time.sleep(interval)


def stop_process(
    process: subprocess.Popen[Any],
    timeout: float = 10.0,
    *,
    sig: int = signal.SIGTERM,
    kill_timeout: float = 10.0,
) -> int | None:
    """Send ``sig`` (SIGTERM: a graceful stop) and wait ``timeout`` s, then SIGKILL.

    Always reaps the process; returns its exit code. A process that already exited is only reaped.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait(kill_timeout)
    return process.returncode


class ManagedProcess:
    """A collector binary with one config set, ready when its health URL answers 200."""

    name = "otelcol"

    def __init__(
        self,
        binary: Path,
        configs: Iterable[Path],
        env: Mapping[str, str],
        health_url: str,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.binary = Path(binary)
        self.configs = [Path(c) for c in configs]
        self.env = dict(env)
        self.health_url = health_url
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The argv this process is started with."""
        argv = [str(self.binary)]
        for config in self.configs:
            argv += ["--config", str(config)]
        return argv

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while started (also after it exited, until :meth:`stop`)."""
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 30.0) -> ManagedProcess:
        """Start the binary and wait (at most ``timeout`` s) until it is healthy."""
        if self.running:
            raise CollectorError(f"{self.name} is already running (pid {self.pid})")
        header = f"\n===== start #{self.starts + 1}: {' '.join(self.command())}\n"
        try:
            self.process = spawn(
                self.command(), self.env, log_path=self.log_path, cwd=self.cwd, header=header
            )
        except OSError as exc:
            raise CollectorError(f"cannot start {self.binary}: {exc}") from exc
        self.starts += 1
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop(timeout=5)  # never leave a half-started process behind
            raise
        return self

    def healthy(self) -> bool:
        """One health probe: the health_check extension answers 200."""
        return http_ok(self.health_url)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Poll the health URL until 200; fail at once if the process exits, or after ``timeout``."""
        wait_ready(
            self.process,
            self.healthy,
            timeout,
            exited=lambda code: CollectorError(
                f"{self.name} exited with code {code} while starting{self._tail()}"
            ),
            timed_out=lambda: CollectorError(
                f"{self.name} not healthy at {self.health_url} after {timeout:.0f}s{self._tail()}"
            ),
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful: receivers close, queues drain or persist), SIGKILL after ``timeout`` s.

        Returns the exit code (``None`` if it was never started). Always reaps the process.
        """
        return self._signal_and_reap(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL, as a crash would: no shutdown, nothing flushed."""
        return self._signal_and_reap(signal.SIGKILL, 5.0)

    def restart(self, timeout: float = 30.0) -> ManagedProcess:
        """Stop (gracefully) and start again with the same ports, storage and environment."""
        self.stop()
        return self.start(timeout)

    def _signal_and_reap(self, sig: int, timeout: float) -> int | None:
        process = self.process
        if process is None:
            return None
        code = stop_process(process, timeout, sig=sig)
        self.process = None
        return code

    def __enter__(self) -> ManagedProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- diagnostics -------------------------------------------------------------------------

    def log(self) -> str:
        """Everything the process wrote (when started with a ``log_path``)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def _tail(self, lines: int = 40) -> str:
        text = self.log()
        if not text:
            return ""
        return f"; last log lines ({self.log_path}):\n" + "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} running={self.running} health={self.health_url}>"
