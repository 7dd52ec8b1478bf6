"""Every Telegram setting through bad values: reporting off never stops the app, on names the variable.

For each variable of :class:`TelegramSettings` and a list of wrong types, negatives, huge numbers,
garbage and whitespace-only values:
- reporting off (unset or false): ``TelegramSettings()`` and ``get_error_reporter()`` never raise,
  the default is used, and one warning names the ignored variable, never the token;
- reporting on: a ``ConfigError`` naming the variable, never carrying the token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pydantic import AliasChoices

from otel_trader import ConfigError
from otel_trader import settings as settings_module
from otel_trader.telegram import get_error_reporter, set_error_reporter
from otel_trader.telegram.settings import TelegramSettings

from .fake_telegram import TOKEN

pytestmark = pytest.mark.timeout(60)

#: Planted in bad token values: it must never appear in an error or a warning.
SECRET = "PLANTEDsecret"
SWITCH = "TELEGRAM_ERROR_REPORTING_ENABLED"

NUMBER_BAD = [
    "abc",
    "five",
    "-1",
    "-0.5",
    "1e400",
    "-1e400",
    "9" * 30,
    "nan",
    "inf",
    "0x10",
    "1,5",
    "--1",
    "1 2",
    "[1]",
    "{}",
    "None",
    "true",
    "½",
    "\x01",
]
URL_BAD = [
    "ftp://x.example",
    "localhost:8080",
    "http://",
    "http://a b",
    "https://x.example/?q=1",
    "https://x.example/#frag",
    "javascript:alert(1)",
    "//host",
    "api.telegram.org",
    f"https://user:{SECRET}@x.example/?token={SECRET}",
]
BAD = {
    "bot_token": [
        "abc",
        "123456",
        "123456:",
        ":AAEabc",
        f"123456:AA E{SECRET}",
        f"bot123456:{SECRET}",
        f"123456:{SECRET}/../x",
        f"123456:{SECRET};rm",
        f"123456:{SECRET}\nX-Injected: 1",
        "-1",
        "1e400",
    ],
    "chat_ids": ["my-chat", "12a", "@ab", "1001;1002", "chat 1", "@", "--5", "1.5", "+100", "@1abc", "1e400"],
    "min_level": ["LOUD", "42", "err", "ERROR,INFO", "WARN", "0", "true", "-1", "\x01"],
    "dedup_minutes": [*NUMBER_BAD, "1441"],
    "queue_size": [*NUMBER_BAD, "0", "100001", "1.5"],
    "timeout_seconds": [*NUMBER_BAD, "0", "121"],
    "max_retries": [*NUMBER_BAD, "11", "2.5"],
    "retry_backoff_seconds": [*NUMBER_BAD, "0", "61"],
    "flush_timeout_seconds": [*NUMBER_BAD, "61"],
    "api_base_url": URL_BAD,
    "signoz_url": URL_BAD,
}
#: Free text shown in reports: nothing is invalid, so neither state may complain.
FREE_TEXT = {"service_name", "environment"}
FREE_TEXT_VALUES = ["abc", "-1", "1e400", "<b>x</b>", "\x01", "  padded  ", "９"]
WHITESPACE = [" ", "\t", "  \n "]
#: Whitespace-only is unset; with reporting on these two are required, so unset is an error.
REQUIRED = {"bot_token": "TELEGRAM_TOKEN is not set", "chat_ids": "TELEGRAM_CHAT_IDS is empty"}
OFF_SWITCHES = [None, "false", "0", "off"]


def variable(field: str) -> str:
    alias = TelegramSettings.model_fields[field].validation_alias
    assert isinstance(alias, AliasChoices)
    return str(alias.choices[0])


def default(field: str) -> object:
    info = TelegramSettings.model_fields[field]
    return info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, reset_otel: None) -> Iterator[pytest.MonkeyPatch]:
    """A clean environment, the warn-once memory cleared per case, no process reporter."""
    set_error_reporter(None)
    yield monkeypatch
    set_error_reporter(None)


def settings_with(
    env: pytest.MonkeyPatch, switch: str | None, field: str, value: str, token: bool = True
) -> TelegramSettings:
    """TelegramSettings() with ``field``'s variable set to ``value`` and the switch as given."""
    for name in (SWITCH, "TELEGRAM_TOKEN", "TELEGRAM_CHAT_IDS"):
        env.delenv(name, raising=False)
    if switch is not None:
        env.setenv(SWITCH, switch)
    if token:
        env.setenv("TELEGRAM_TOKEN", TOKEN)
        env.setenv("TELEGRAM_CHAT_IDS", "1001")
    env.setenv(variable(field), value)
    # One warning per distinct problem per process: forget earlier cases.
    env.setattr(settings_module, "_warned_ignored", set())
    return TelegramSettings()


def ignored_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "otel_trader" and r.levelno == logging.WARNING and "ignored" in r.getMessage()
    ]


def test_the_lists_cover_every_field() -> None:
    assert set(TelegramSettings.model_fields) == {"enabled", *BAD, *FREE_TEXT}


@pytest.mark.parametrize("field", sorted(BAD))
def test_bad_value_with_reporting_off_is_ignored_with_one_warning(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    name = variable(field)
    for i, value in enumerate(BAD[field]):
        switch = OFF_SWITCHES[i % len(OFF_SWITCHES)]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="otel_trader"):
            settings = settings_with(env, switch, field, value, token=field != "bot_token")
            assert get_error_reporter() is None
        case = f"{name}={value!r} with {SWITCH}={switch}"
        assert settings.enabled is False, case
        assert getattr(settings, field) == default(field), case
        warnings = ignored_warnings(caplog)
        assert len(warnings) == 1, (case, warnings)
        assert f"{name}=" in warnings[0], (case, warnings)
        assert SECRET not in caplog.text and TOKEN not in caplog.text, (case, caplog.text)
        set_error_reporter(None)


@pytest.mark.parametrize("field", sorted(BAD))
def test_bad_value_with_reporting_on_names_the_variable(env: pytest.MonkeyPatch, field: str) -> None:
    name = variable(field)
    for value in BAD[field]:
        with pytest.raises(ConfigError) as info:
            settings_with(env, "true", field, value)
        message = str(info.value)
        assert f"{name}=" in message, (value, message)
        assert SECRET not in message and TOKEN not in message, (value, message)
        set_error_reporter(None)
        with pytest.raises(ConfigError):
            get_error_reporter()


def test_several_bad_values_with_reporting_off_give_one_warning_naming_each(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    env.setenv("TELEGRAM_ERROR_QUEUE_SIZE", "-5")
    env.setenv("TELEGRAM_TIMEOUT_SECONDS", "soon")
    env.setenv("TELEGRAM_API_BASE_URL", "api.telegram.org")
    with caplog.at_level(logging.WARNING, logger="otel_trader"):
        settings = settings_with(env, "false", "bot_token", f"123:{SECRET} x", token=False)
    [warning] = ignored_warnings(caplog)
    for name in (
        "TELEGRAM_ERROR_QUEUE_SIZE",
        "TELEGRAM_TIMEOUT_SECONDS",
        "TELEGRAM_API_BASE_URL",
        "TELEGRAM_TOKEN",
    ):
        assert f"{name}=" in warning, warning
    assert SECRET not in caplog.text
    assert settings.queue_size == 1000 and settings.timeout_seconds == 10.0 and settings.bot_token is None


@pytest.mark.parametrize("value", ["maybe", "2", "enable", "-1", "yes please", "\x01"])
def test_a_bad_switch_is_always_an_error(env: pytest.MonkeyPatch, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_with(env, value, "queue_size", "-5")
    assert f"{SWITCH}=" in str(info.value) and TOKEN not in str(info.value)


def test_explicit_bad_arguments_are_errors_even_with_reporting_off(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="argument queue_size"):
        TelegramSettings(enabled=False, queue_size=-5)


@pytest.mark.parametrize("field", sorted(FREE_TEXT))
def test_free_text_is_accepted_in_both_states(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    for value in FREE_TEXT_VALUES:
        with caplog.at_level(logging.WARNING, logger="otel_trader"):
            assert getattr(settings_with(env, "false", field, value), field) == value
            assert getattr(settings_with(env, "true", field, value), field) == value
    assert ignored_warnings(caplog) == []


@pytest.mark.parametrize("field", sorted({*BAD, *FREE_TEXT}))
def test_whitespace_only_is_unset(
    env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, field: str
) -> None:
    for value in WHITESPACE:
        with caplog.at_level(logging.WARNING, logger="otel_trader"):
            assert getattr(settings_with(env, None, field, value), field) == default(field)
        assert ignored_warnings(caplog) == []
        if field in REQUIRED:
            with pytest.raises(ConfigError, match=REQUIRED[field]):
                settings_with(env, "true", field, value)
        else:
            assert getattr(settings_with(env, "true", field, value), field) == default(field)
