"""SIGTERM under uvicorn with telemetry and Telegram reporting on: one exit budget for both.

The app (tests/core/apps/telegram_app.py) stops its reporter in the lifespan, as the README
shows, and instrument_app flushes telemetry after it. Both draw on one budget,
TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS (2 s), so the exit takes that long at most even with a dead
collector and a Telegram that never answers, and reports queued at exit still reach a Telegram
that answers slowly.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .fake_telegram import TOKEN, FakeTelegram

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "apps"))
from procs import AppProcess, Launcher, clean_env, free_port  # noqa: E402

pytestmark = pytest.mark.timeout(120)

DEADLINE = 2.0  # TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS default
#: Process teardown after the budget: uvicorn stopping, the interpreter ending.
MARGIN = 1.0


class BlackHole:
    """A Bot API that accepts connections and never answers (a hung Telegram or proxy)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, name="black-hole", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed
                return
            self.connections.append(conn)  # held open, never read from or answered

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()
        self.thread.join(5)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launch = Launcher(tmp_path)
    yield launch
    launch.stop_all()


def start_app(launcher: Launcher, telegram_url: str) -> AppProcess:
    """The app with a dead collector (a port nothing listens on) and reports to ``telegram_url``."""
    return launcher.uvicorn(
        "telegram_app",
        clean_env(
            TELEMETRY_ENABLED="true",
            SERVICE_NAME="exit-budget",
            OTLP_ENDPOINT=f"127.0.0.1:{free_port()}",
            TELEGRAM_ERROR_REPORTING_ENABLED="true",
            TELEGRAM_TOKEN=TOKEN,
            TELEGRAM_CHAT_IDS="1001",
            TELEGRAM_API_BASE_URL=telegram_url,
        ),
    )


def fail(app: AppProcess, *kinds: str) -> None:
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for kind in kinds:
            assert client.get(f"/fail/{kind}").status_code == 500


def test_sigterm_exit_with_dead_collector_and_hung_telegram_stays_in_budget(
    launcher: Launcher, fake_telegram: FakeTelegram
) -> None:
    hole = BlackHole()
    try:
        app = start_app(launcher, hole.url)
        fail(app, "alpha", "beta", "gamma")  # the first report hangs in flight, two wait behind it
        deadline = time.monotonic() + 10
        while not hole.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hole.connections, app.stderr()[-3000:]
        exit_seconds = app.stop()
    finally:
        hole.close()
    print(f"\nSIGTERM -> exit, dead collector + hung Telegram: {exit_seconds:.2f} s")
    assert exit_seconds < DEADLINE + MARGIN, f"exit took {exit_seconds:.2f}s:\n{app.stderr()[-3000:]}"
    assert "Traceback" not in app.stderr(), app.stderr()[-3000:]


def test_reports_queued_at_sigterm_reach_a_slow_telegram_within_the_budget(
    launcher: Launcher, fake_telegram: FakeTelegram
) -> None:
    app = start_app(launcher, fake_telegram.url)
    # Each error twice: one message now, one "1 more like this" follow-up queued at shutdown.
    fail(app, "alpha", "alpha", "beta", "beta", "gamma", "gamma")
    deadline = time.monotonic() + 10
    while len(fake_telegram.sent()) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(fake_telegram.sent()) == 3, app.stderr()[-3000:]
    # Slow but healthy: the three follow-ups take 1.2 s of the 2 s budget to send.
    fake_telegram.delay = 0.4
    exit_seconds = app.stop()
    follow_ups = [c.visible or "" for c in fake_telegram.sent()[3:]]
    print(f"\nSIGTERM -> exit, dead collector + 0.4 s Telegram, 3 follow-ups: {exit_seconds:.2f} s")
    assert len(follow_ups) == 3 and all("1 more like this" in t for t in follow_ups), follow_ups
    assert {kind for kind in ("alpha", "beta", "gamma") if any(kind in t for t in follow_ups)} == {
        "alpha",
        "beta",
        "gamma",
    }
    assert exit_seconds < DEADLINE + MARGIN, f"exit took {exit_seconds:.2f}s:\n{app.stderr()[-3000:]}"
