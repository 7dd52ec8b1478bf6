"""Telegram reporting from the environment with only the five lines (no install(), no initialize()).

Real uvicorn, the Bot API stand-in on loopback. With TELEGRAM_ERROR_REPORTING_ENABLED=true,
``instrument_app`` builds, installs and lifespan-starts the reporter, with telemetry on or off;
bad Telegram settings stop the start-up with a named error instead of failing in an except block.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .fake_telegram import TOKEN, FakeTelegram

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core" / "apps"))
from procs import Launcher, clean_env  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launcher]:
    launch = Launcher(tmp_path)
    yield launch
    launch.stop_all()


def env(url: str, **extra: str) -> dict[str, str]:
    return clean_env(
        TELEGRAM_ERROR_REPORTING_ENABLED="true",
        TELEGRAM_TOKEN=TOKEN,
        TELEGRAM_CHAT_IDS="1001",
        TELEGRAM_API_BASE_URL=url,
        TELEMETRY_EXPORTER="none",
        **extra,
    )


@pytest.mark.parametrize("telemetry", ["true", "false"])
def test_five_lines_deliver_request_errors(launcher: Launcher, fake_telegram: FakeTelegram, telemetry: str) -> None:
    app = launcher.uvicorn("five_lines_app", env(fake_telegram.url, TELEMETRY_ENABLED=telemetry))
    with httpx.Client(base_url=app.url, timeout=10) as client:
        assert client.get("/ok").status_code == 200
        assert client.get("/test-error").status_code == 500
    deadline = time.monotonic() + 10
    while not fake_telegram.sent() and time.monotonic() < deadline:
        time.sleep(0.05)
    sent = fake_telegram.sent()
    assert len(sent) == 1, app.stderr()[-3000:]
    text = sent[0].visible or ""
    assert "RuntimeError" in text and "order book for BTC-USDT is gone" in text
    assert "/test-error" in text
    app.stop()
    assert "Traceback" not in app.stderr().split("Application startup complete")[0]


def test_invalid_telegram_settings_stop_the_start_up(launcher: Launcher, fake_telegram: FakeTelegram) -> None:
    bad = env(fake_telegram.url, TELEMETRY_ENABLED="true")
    bad["TELEGRAM_CHAT_IDS"] = "not a chat"
    with pytest.raises(AssertionError) as failed:
        launcher.uvicorn("five_lines_app", bad)
    message = str(failed.value)
    assert "TELEGRAM_CHAT_IDS" in message and "ConfigError" in message
    assert TOKEN not in message
