"""monitoring/alertmanager: amtool accepts it, routes by severity, keeps secrets out, and a real
Alertmanager 0.25 delivers to a Bot API stand-in with inhibition applied."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, wait_for_port

from .fake_telegram import TOKEN, FakeTelegram

pytestmark = pytest.mark.timeout(90)

AM_DIR = ROOT / "monitoring" / "alertmanager"
CONFIG = AM_DIR / "alertmanager.yml"
RENDER = AM_DIR / "render.sh"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make system-deps` (Debian prometheus-alertmanager)")
    return path


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool("amtool"), *args], capture_output=True, text=True, timeout=30)


def test_amtool_check_config_passes() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "1 templates" in result.stdout
    assert "3 inhibit rules" in result.stdout and "3 receivers" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=critical", "alertname=TraderAPIDown"], "telegram-email-critical"),
        (["severity=warning", "alertname=HighLatency"], "slack-warnings"),
        (["severity=warning", "alertname=ErrorReportsFailing"], "slack-warnings"),
        (["severity=info"], "blackhole"),
        (["alertname=Unlabelled"], "slack-warnings"),
    ],
)
def test_routes_by_severity(labels: list[str], receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receiver


def test_secrets_are_files_not_values() -> None:
    text = CONFIG.read_text()
    for field in ("smtp_auth_password_file", "slack_api_url_file"):
        assert re.search(rf"^\s+{field}: /etc/alertmanager/secrets/\w+$", text, re.M), field
    assert not re.search(r"^\s*(smtp_auth_password|slack_api_url|api_url|auth_password):", text, re.M)
    assert 'bot_token: "__TELEGRAM_BOT_TOKEN_FROM_FILE__"' in text
    for path in AM_DIR.rglob("*"):
        if path.is_file():
            content = path.read_text()
            assert not re.search(r"\b\d{6,}:[A-Za-z0-9_-]{30,}\b", content), f"bot token in {path}"
            assert "hooks.slack.com/services/T" not in content, f"Slack webhook in {path}"


def test_templates_render() -> None:
    for name in ("telegram.message", "slack.title", "slack.text", "email.subject"):
        result = amtool(
            "template", "render", f"--template.glob={AM_DIR}/templates/*.tmpl",
            f'--template.text={{{{ template "otel_trader.{name}" . }}}}',
        )
        assert result.returncode == 0 and result.stdout.strip(), (name, result.stderr)


def render(tmp_path: Path, version: str, chat_id: str = "-100777") -> subprocess.CompletedProcess[str]:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "telegram_bot_token").write_text(TOKEN + "\n")
    env = dict(os.environ, ALERTMANAGER_SECRETS_DIR=str(secrets), TELEGRAM_ALERT_CHAT_ID=chat_id,
               ALERTMANAGER_VERSION=version)
    return subprocess.run(
        ["bash", str(RENDER), str(CONFIG), str(tmp_path / "run" / "alertmanager.yml")],
        env=env, capture_output=True, text=True, timeout=30,
    )


def test_render_puts_the_token_only_in_a_private_runtime_copy(tmp_path: Path) -> None:
    result = render(tmp_path, "0.25.0")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "run" / "alertmanager.yml"
    assert f'bot_token: "{TOKEN}"' in out.read_text() and "chat_id: -100777" in out.read_text()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert (tmp_path / "run" / "templates" / "otel_trader.tmpl").exists()
    check = amtool("check-config", str(out))
    assert check.returncode == 0, check.stdout + check.stderr

    result = render(tmp_path, "0.27.0")
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert TOKEN not in text and f"bot_token_file: {tmp_path}/secrets/telegram_bot_token" in text

    bad = render(tmp_path, "0.25.0", chat_id="my-group")
    assert bad.returncode != 0 and "TELEGRAM_ALERT_CHAT_ID='my-group' is not valid" in bad.stderr


def slack_calls(fake: FakeTelegram) -> list:
    with fake.lock:
        return [c for c in fake.calls if c.method == "slack"]


def _post(url: str, payload: object) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def test_real_alertmanager_delivers_critical_to_telegram_and_inhibits(fake_telegram: FakeTelegram, tmp_path: Path) -> None:
    binary = shutil.which("prometheus-alertmanager") or tool("alertmanager")
    fake_telegram.chats.add("-100777")
    assert render(tmp_path, "0.25.0").returncode == 0
    secrets = tmp_path / "secrets"
    (secrets / "slack_webhook_url").write_text(fake_telegram.url + "/slack/T000/B000/XXXX\n")
    (secrets / "smtp_password").write_text("not-used\n")
    config = tmp_path / "run" / "alertmanager.yml"
    text = config.read_text().replace("/etc/alertmanager/secrets", str(secrets))
    # Test-only changes: loopback endpoints (no DNS, no internet) and short group waits.
    text = text.replace("global:\n", f"global:\n  telegram_api_url: {fake_telegram.url}\n", 1)
    text = re.sub(r'smtp_smarthost: "[^"]+"', f'smtp_smarthost: "127.0.0.1:{free_port()}"', text)
    text = re.sub(r"group_wait: \d+s", "group_wait: 1s", text)
    config.write_text(text)
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        _post(f"http://127.0.0.1:{port}/api/v2/alerts", [
            {"labels": {"alertname": "TraderAPIDown", "severity": "critical", "job": "trader-api", "instance": "api:8000"},
             "annotations": {"summary": "Trader API is down", "description": "could not scrape <api> & co"},
             "generatorURL": "http://prometheus:9090/graph?g0.expr=up&g0.tab=1"},
            {"labels": {"alertname": "HighErrorRate", "severity": "warning", "job": "trader-api"},
             "annotations": {"summary": "High error rate on trader-api"}},
            {"labels": {"alertname": "HighLatency", "severity": "warning", "job": "trader-worker"},
             "annotations": {"summary": "High latency on trader-worker"}},
        ])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (fake_telegram.sent() and slack_calls(fake_telegram)):
            time.sleep(0.1)
        time.sleep(0.5)  # a duplicate or a late inhibited notification would show up here
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/alerts", timeout=5) as response:
            states = {a["labels"]["alertname"]: a["status"] for a in json.load(response)}
    finally:
        process.terminate()
        process.wait(10)
    assert states["HighErrorRate"]["state"] == "suppressed" and states["HighErrorRate"]["inhibitedBy"]
    assert states["HighLatency"]["state"] == "active"
    [telegram] = fake_telegram.sent("-100777")
    assert telegram.parse_mode == "HTML" and telegram.token == TOKEN
    visible = telegram.visible or ""
    assert "FIRING" in visible and "TraderAPIDown" in visible and "could not scrape <api> & co" in visible
    slack = [json.loads(c.text or "{}") for c in slack_calls(fake_telegram)]
    assert [s["channel"] for s in slack] == ["#trading-alerts"]
    assert "HighLatency" in json.dumps(slack) and "HighErrorRate" not in json.dumps(slack)
