"""The guides keep TELEMETRY_*, OTLP_* and TELEGRAM_* in a `.env` file: it is read.

Real environment wins over the file; ``TELEMETRY_ENV_FILE`` points at another file or, set to
``none``, turns the file off. Proven under a real uvicorn started in a directory with a `.env`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from otel_trader import TelemetryConfig
from otel_trader.telegram.settings import TelegramSettings
from tests.conftest import free_port, stop_process, wait_for_port

GUIDE_DOTENV = """\
# the guides' .env
TELEMETRY_ENABLED=true
SERVICE_NAME=auto-trader
ENVIRONMENT=production
OTLP_ENDPOINT=localhost:4317
TELEGRAM_ERROR_REPORTING_ENABLED=true
TELEGRAM_TOKEN=123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw
TELEGRAM_CHAT_IDS=111,222
"""


@pytest.fixture
def in_dir_with_dotenv(reset_otel, monkeypatch, tmp_path):
    monkeypatch.delenv("TELEMETRY_ENV_FILE")  # the default: ./.env
    (tmp_path / ".env").write_text(GUIDE_DOTENV)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_dotenv_in_the_working_directory_is_read(in_dir_with_dotenv):
    config = TelemetryConfig()
    assert config.active
    assert (config.service_name, config.environment, config.otlp_endpoint) == (
        "auto-trader",
        "production",
        "localhost:4317",
    )
    telegram = TelegramSettings()
    assert telegram.enabled and telegram.chat_ids == ["111", "222"]


def test_real_environment_wins_over_the_file(in_dir_with_dotenv, monkeypatch):
    monkeypatch.setenv("SERVICE_NAME", "from-env")
    monkeypatch.setenv("TELEMETRY_ENABLED", "false")
    config = TelemetryConfig()
    assert config.service_name == "from-env" and not config.active


def test_another_file_or_none(in_dir_with_dotenv, monkeypatch, caplog):
    other = in_dir_with_dotenv / "prod.env"
    other.write_text("TELEMETRY_ENABLED=true\nSERVICE_NAME=from-other-file\n")
    monkeypatch.setenv("TELEMETRY_ENV_FILE", str(other))
    assert TelemetryConfig().service_name == "from-other-file"
    monkeypatch.setenv("TELEMETRY_ENV_FILE", "none")
    assert not TelemetryConfig().active
    monkeypatch.setenv("TELEMETRY_ENV_FILE", str(in_dir_with_dotenv / "missing.env"))
    assert not TelemetryConfig().active
    assert any("missing.env" in r.getMessage() for r in caplog.records if r.name == "otel_trader")


def test_bad_value_in_the_file_is_named(in_dir_with_dotenv):
    from otel_trader import ConfigError

    (in_dir_with_dotenv / ".env").write_text("TELEMETRY_ENABLED=true\nTRACE_SAMPLE_RATIO=7\n")
    with pytest.raises(ConfigError, match="TRACE_SAMPLE_RATIO='7' is not valid"):
        TelemetryConfig()


APP = """\
from fastapi import FastAPI
from otel_trader import get_error_reporter, instrument_app

app = FastAPI()
instrument_app(app)


@app.get("/ping/{n}")
async def ping(n: int) -> dict:
    return {"n": n, "reporter": get_error_reporter() is not None}
"""


@pytest.mark.timeout(60)
def test_uvicorn_started_next_to_a_dotenv_has_telemetry(tmp_path):
    # Exports nowhere and points the Bot API at a dead loopback port: nothing leaves the machine.
    dotenv = GUIDE_DOTENV.replace("OTLP_ENDPOINT=localhost:4317", "TELEMETRY_EXPORTER=none")
    (tmp_path / ".env").write_text(dotenv + f"TELEGRAM_API_BASE_URL=http://127.0.0.1:{free_port()}\n")
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    port = free_port()
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith(("TELEMETRY_", "OTLP_", "OTEL_", "TELEGRAM_"))}
    with (tmp_path / "err.log").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        wait_for_port(port, timeout=30)
        base = f"http://127.0.0.1:{port}"
        for n in range(3):
            body = urllib.request.urlopen(f"{base}/ping/{n}", timeout=10).read()
            assert b'"reporter":true' in body
        deadline = time.monotonic() + 10
        while True:
            metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
            if 'path="/ping/{n}"' in metrics or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        line = next(ln for ln in metrics.splitlines() if ln.startswith("http_requests_total{") and "/ping/{n}" in ln)
        assert line.endswith(" 3.0"), line
        assert 'job="auto-trader"' in metrics or "auto-trader" in metrics  # target_info names the service
    finally:
        stop_process(process)
        process.wait()
    assert "123456789:AAH" not in (tmp_path / "err.log").read_text(errors="replace")
