"""Pure parts: fingerprints, dedup windows, formatting limits, settings and the process reporter."""

from __future__ import annotations

import logging
import random
import re

import pytest

import otel_trader
from otel_trader import ConfigError, TelegramErrorReporter, get_error_reporter
from otel_trader.telegram.dedup import Deduplicator, fingerprint, normalise_message
from otel_trader.telegram.format import fit_middle, format_report, telegram_length, to_plain_text
from otel_trader.telegram.report import capture_exception
from otel_trader.telegram.settings import TelegramSettings
from otel_trader.web.middleware import RequestInfo

from .fake_telegram import TOKEN, parse_html

pytestmark = pytest.mark.timeout(30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_normalised_messages_ignore_ids() -> None:
    a = normalise_message(
        "order 123 for 7f3e9c1a-1b2c-4d5e-8f90-123456789abc failed at 0x7ffe12 (hash 9f86d081884c7d65)"
    )
    b = normalise_message(
        "order 98765 for 00000000-0000-4000-8000-000000000000 failed at 0xdead (hash 0123456789abcdef)"
    )
    assert a == b == "order <n> for <uuid> failed at <hex> (hash <hex>)"
    assert normalise_message("connection refused") != normalise_message("connection reset")
    assert fingerprint("E", "f.py:1", "x 1") == fingerprint("E", "f.py:1", "x 2")
    assert fingerprint("E", "f.py:1", "x") != fingerprint("E", "f.py:2", "x")


def test_dedup_window_sends_once_then_one_follow_up() -> None:
    clock = Clock()
    dedup = Deduplicator(60, clock=clock)
    key = ("E", "f.py:1", "boom")
    assert dedup.admit(key, logging.ERROR)
    assert not any(dedup.admit(key, logging.ERROR) for _ in range(99))
    assert dedup.due() == []
    clock.now += 60
    [follow] = dedup.due()
    assert follow.count == 99 and follow.window_seconds == 60
    # The follow-up opened a new window: a steady error costs one message per window.
    assert not dedup.admit(key, logging.CRITICAL)
    clock.now += 60
    [follow] = dedup.due()
    assert follow.count == 1 and follow.level == logging.CRITICAL
    # A quiet window is forgotten; the next occurrence is sent in full again.
    clock.now += 60
    assert dedup.due() == [] and len(dedup) == 0
    assert dedup.admit(key, logging.ERROR)


def test_dedup_settles_an_expired_window_on_admit_and_bounds_entries() -> None:
    clock = Clock()
    dedup = Deduplicator(10, clock=clock, max_entries=3)
    key = ("E", "x", "y")
    dedup.admit(key, logging.ERROR)
    dedup.admit(key, logging.ERROR)
    clock.now += 11
    assert not dedup.admit(key, logging.ERROR)  # counted in the window the follow-up opens
    assert [f.count for f in dedup.due()] == [1]
    for i in range(5):
        assert dedup.admit(("E", "x", f"other{i}"), logging.ERROR)
    assert len(dedup) == 3
    assert [f.count for f in dedup.flush()] == [1]  # the evicted window's count was not lost


def test_dedup_zero_window_sends_everything() -> None:
    dedup = Deduplicator(0)
    assert all(dedup.admit(("E", "x", "y"), logging.ERROR) for _ in range(5))


def _report(message: str, frames: int = 5, **kwargs: object) -> object:
    def recurse(n: int) -> None:
        if n == 0:
            raise ValueError(message)
        recurse(n - 1)

    try:
        recurse(frames)
    except ValueError as exc:
        return capture_exception(exc, **kwargs)  # type: ignore[arg-type]
    raise AssertionError


@pytest.mark.parametrize("seed", range(20))
def test_formatted_reports_always_fit_and_parse(seed: int) -> None:
    rng = random.Random(seed)
    alphabet = "ab<>&\"' \n😀é中\U0001f525/" + "x" * 10
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20_000)))
    context = {
        f"k{i}{rng.choice(alphabet)}": "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3000)))
        for i in range(rng.randint(0, 40))
    }
    request = RequestInfo("GET", "/r/" + text[:5000], "/r", 500, "1.2.3.4:5", "ab" * 16)
    report = _report(text, frames=rng.randint(1, 200), context=context, request=request)
    html = format_report(report, service=text[:3000] or "s", environment="e&<>", signoz_url="https://s.io")  # type: ignore[arg-type]
    assert telegram_length(html) <= 4096
    problem, visible = parse_html(html)
    assert problem is None, problem
    assert telegram_length(visible) <= 4096


def test_fit_middle_keeps_head_and_tail() -> None:
    text = "HEAD " + "m" * 5000 + " TAIL"
    cut = fit_middle(text, 200)
    assert telegram_length(cut) <= 200 and cut.startswith("HEAD") and cut.endswith("TAIL")
    assert "characters cut" in cut
    assert fit_middle("<&>" * 100, 50).count("&") >= 1 and telegram_length(fit_middle("<&>" * 100, 50)) <= 50
    assert to_plain_text("<b>a &lt; b</b>") == "a < b"


def test_reports_say_how_to_open_the_trace_locally_and_in_signoz() -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    report = _report("boom", trace_id=trace_id)
    local = f"<code>otel-trader traces --trace-id {trace_id}</code>"
    linked = format_report(report, service="s", environment="e", signoz_url="https://signoz.example.com")
    assert f'<b>Trace:</b> <a href="https://signoz.example.com/trace/{trace_id}">{trace_id}</a>\n' in linked
    assert f"\n<b>Locally:</b> {local}\n" in linked
    # Without SigNoz one short line: the command carries the id.
    plain = format_report(report, service="s", environment="e")
    assert f"\n<b>Trace:</b> {local}\n" in plain and plain.count(trace_id) == 1
    assert parse_html(linked)[0] is None and parse_html(plain)[0] is None
    assert "otel-trader traces" not in format_report(_report("boom"), service="s", environment="e")


def test_settings_errors_name_variable_value_and_accepted(
    monkeypatch: pytest.MonkeyPatch, reset_otel: None
) -> None:
    # Reporting on: with it off, bad values are ignored (tests/telegram/test_settings_off.py).
    monkeypatch.setenv("TELEGRAM_ERROR_REPORTING_ENABLED", "true")
    monkeypatch.setenv("TELEGRAM_ERROR_DEDUP_MINUTES", "five")
    with pytest.raises(
        ConfigError, match=r"TELEGRAM_ERROR_DEDUP_MINUTES='five' is not valid: expected a number"
    ):
        TelegramSettings()
    monkeypatch.setenv("TELEGRAM_ERROR_DEDUP_MINUTES", "-1")
    with pytest.raises(
        ConfigError, match=r"TELEGRAM_ERROR_DEDUP_MINUTES='-1' is not valid: .*greater than or equal to 0"
    ):
        TelegramSettings()
    monkeypatch.delenv("TELEGRAM_ERROR_DEDUP_MINUTES")
    monkeypatch.setenv("TELEGRAM_CHAT_IDS", "123, my-chat")
    with pytest.raises(
        ConfigError, match=r"TELEGRAM_CHAT_IDS='123, my-chat' is not valid: bad chat id\(s\) \['my-chat'\]"
    ):
        TelegramSettings()
    monkeypatch.setenv("TELEGRAM_CHAT_IDS", "123,-100456,@alerts_chan,123")
    monkeypatch.setenv("TELEGRAM_ERROR_REPORTING_ENABLED", "maybe")
    with pytest.raises(
        ConfigError, match=r"TELEGRAM_ERROR_REPORTING_ENABLED='maybe' is not valid: expected true or false"
    ):
        TelegramSettings()
    monkeypatch.setenv("TELEGRAM_ERROR_REPORTING_ENABLED", "true")
    with pytest.raises(ConfigError, match=r"TELEGRAM_TOKEN is not set"):
        TelegramSettings()
    monkeypatch.setenv("TELEGRAM_TOKEN", "my secret token")
    with pytest.raises(ConfigError) as info:
        TelegramSettings()
    assert "TELEGRAM_TOKEN='<hidden>' is not valid" in str(info.value) and "secret" not in str(info.value)
    monkeypatch.setenv("TELEGRAM_TOKEN", TOKEN)
    settings = TelegramSettings()
    assert settings.chat_ids == ["123", "-100456", "@alerts_chan"] and settings.dedup_seconds == 300
    assert TOKEN not in repr(settings)
    with pytest.raises(ConfigError, match=r"argument signoz_url='signoz:3301' is not valid"):
        TelegramErrorReporter(TOKEN, ["1"], signoz_url="signoz:3301")


def test_get_error_reporter_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, fake_telegram: object
) -> None:
    from otel_trader.telegram import set_error_reporter

    assert get_error_reporter() is None  # not configured: the guides' `if error_reporter:` guards skip
    set_error_reporter(None)
    monkeypatch.setenv("TELEGRAM_ERROR_REPORTING_ENABLED", "true")
    monkeypatch.setenv("TELEGRAM_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_CHAT_IDS", "1001,1002")
    monkeypatch.setenv("TELEGRAM_ERROR_DEDUP_MINUTES", "10")
    monkeypatch.setenv("SIGNOZ_URL", "https://signoz.example.com/")
    reporter = get_error_reporter()
    assert reporter is not None and reporter is get_error_reporter()
    assert reporter.settings.chat_ids == ["1001", "1002"] and reporter.settings.dedup_minutes == 10
    assert reporter.signoz_url == "https://signoz.example.com"
    assert otel_trader.get_error_reporter is get_error_reporter


def test_install_gives_the_reporter_its_service_identity(
    monkeypatch: pytest.MonkeyPatch, fake_telegram: object
) -> None:
    from otel_trader import TelemetryConfig, TelemetryManager
    from otel_trader.telegram.identity import ServiceIdentity

    for name in ("DEPLOYMENT_ENVIRONMENT", "SIGNOZ_URL"):
        monkeypatch.delenv(name, raising=False)
    manager = TelemetryManager(
        TelemetryConfig(service_name="bot", environment="staging", signoz_url="https://signoz.example.com")
    )
    reporter = TelegramErrorReporter(TOKEN, ["1001"])
    # Not installed: its own settings and the defaults; the process's telemetry is not looked up.
    assert reporter.identity == ServiceIdentity("unknown_service:python", "development", None)
    assert reporter.install(manager, middleware_added=True) is reporter
    assert reporter.identity == ServiceIdentity("bot", "staging", "https://signoz.example.com")
    assert reporter.hook in manager.error_hooks
    # The reporter's own settings win over the manager's.
    explicit = TelegramErrorReporter(TOKEN, ["1001"], service_name="api").install(manager, middleware_added=True)
    assert (explicit.service_name, explicit.environment) == ("api", "staging")


def test_metric_names_at_metrics_endpoint(telemetry, fake_telegram: object) -> None:
    reporter = TelegramErrorReporter(TOKEN, ["1001"], queue_size=1)
    assert reporter.submit(ValueError("a")) == "queued"
    assert reporter.submit(ValueError("a")) == "suppressed"
    assert reporter.submit(KeyError("b")) == "dropped"
    scraped = telemetry.scrape()
    names = sorted(set(re.findall(r"^(otel_trader_error_reports\w*)\{", scraped, re.M)))
    print(
        "\n"
        + "\n".join(line for line in scraped.splitlines() if line.startswith("otel_trader_error_reports"))
    )
    assert names == ["otel_trader_error_reports_dropped_total", "otel_trader_error_reports_total"]
    assert re.search(
        r'^otel_trader_error_reports_total\{level="ERROR",otel_scope_name="otel_trader.telegram"'
        r'.*result="suppressed"\} 1\.0$',
        scraped,
        re.M,
    )
    assert "# TYPE otel_trader_error_reports_total counter" in scraped
    assert "# TYPE otel_trader_error_reports_dropped_total counter" in scraped
