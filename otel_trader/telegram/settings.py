"""Telegram error-reporting settings: one declarative table, like :mod:`otel_trader.settings`.

Read from the environment; keyword arguments win. With reporting on, invalid values raise
:class:`otel_trader.ConfigError` naming the variable, the value (never the bot token) and what
is accepted. With reporting off only ``TELEGRAM_ERROR_REPORTING_ENABLED`` is validated: other
invalid variables are named in one warning and replaced by their defaults, so a half-configured
reporter that is switched off never stops the application.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from otel_trader.settings import ConfigError, EnvSettings, env_vars

__all__ = ["TelegramSettings"]

_TOKEN_RE = re.compile(r"^\d+:[A-Za-z0-9_-]+$")
# A numeric chat id (groups and channels are negative) or a public @channelusername.
_CHAT_RE = re.compile(r"^(-?\d+|@[A-Za-z][A-Za-z0-9_]{3,})$")
_URL_RE = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


_env = env_vars


class TelegramSettings(EnvSettings):
    """Settings of :class:`~otel_trader.telegram.TelegramErrorReporter`, read from the environment."""

    # Off means off: while reporting is disabled, only `enabled` is validated (EnvSettings).
    _switch_field: ClassVar[str | None] = "enabled"

    enabled: bool = Field(
        False,
        validation_alias=_env("TELEGRAM_ERROR_REPORTING_ENABLED"),
        description="Send errors to Telegram. Off by default.",
    )
    bot_token: SecretStr | None = Field(
        None,
        validation_alias=_env("TELEGRAM_TOKEN", "TELEGRAM_BOT_TOKEN"),
        description="Bot token from @BotFather (`123456:ABC-…`). Required when reporting is enabled.",
    )
    chat_ids: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias=_env("TELEGRAM_CHAT_IDS"),
        description="Chats that receive reports (comma list of numeric ids or `@channel` names). Required when enabled.",
    )
    dedup_minutes: float = Field(
        5.0,
        ge=0,
        le=1440,
        validation_alias=_env("TELEGRAM_ERROR_DEDUP_MINUTES"),
        description="One message per error fingerprint per window, then one `N more like this` follow-up; 0 sends every error.",
    )
    min_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "ERROR",
        validation_alias=_env("TELEGRAM_ERROR_MIN_LEVEL"),
        description="Lowest level a `TelegramLogHandler(reporter)` reports (ERROR without a reporter argument).",
    )
    queue_size: int = Field(
        1000,
        ge=1,
        le=100_000,
        validation_alias=_env("TELEGRAM_ERROR_QUEUE_SIZE"),
        description="Reports waiting to be sent (per chat too); beyond it reports are dropped and counted.",
    )
    api_base_url: str = Field(
        "https://api.telegram.org",
        validation_alias=_env("TELEGRAM_API_BASE_URL"),
        description="Bot API base URL (a local Bot API server or a test double).",
    )
    timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=120,
        validation_alias=_env("TELEGRAM_TIMEOUT_SECONDS"),
        description="Deadline of one Bot API call, in seconds.",
    )
    max_retries: int = Field(
        3,
        ge=0,
        le=10,
        validation_alias=_env("TELEGRAM_MAX_RETRIES"),
        description="Retries of a message after a 5xx, a timeout or a connection error (exponential backoff).",
    )
    retry_backoff_seconds: float = Field(
        0.5,
        gt=0,
        le=60,
        validation_alias=_env("TELEGRAM_RETRY_BACKOFF_SECONDS"),
        description="First retry delay; doubles per attempt (capped at 10 s), with jitter.",
    )
    flush_timeout_seconds: float | None = Field(
        None,
        ge=0,
        le=60,
        validation_alias=_env("TELEGRAM_FLUSH_TIMEOUT_SECONDS"),
        description="Longest `shutdown()` sends queued reports. It never goes past the exit budget "
        "(`TELEMETRY_SHUTDOWN_TIMEOUT_SECONDS`) that it shares with the telemetry flush; unset: "
        "all that is left of it, or three quarters while telemetry still has to flush.",
    )
    signoz_url: str | None = Field(
        None,
        validation_alias=_env("SIGNOZ_URL"),
        description="SigNoz UI base URL; reports link the trace as `{SIGNOZ_URL}/trace/{trace_id}`.",
    )
    service_name: str | None = Field(
        None,
        validation_alias=_env("SERVICE_NAME", "OTEL_SERVICE_NAME"),
        description="Service shown in reports (default: the telemetry manager's).",
    )
    environment: str | None = Field(
        None,
        validation_alias=_env("ENVIRONMENT", "DEPLOYMENT_ENVIRONMENT"),
        description="Environment shown in reports (default: the telemetry manager's).",
    )

    @field_validator("chat_ids", mode="before")
    @classmethod
    def _split_chats(cls, value: Any) -> Any:
        if isinstance(value, (int, str)) and not isinstance(value, bool):
            value = str(value).split(",")  # a comma list, as every list variable
        if isinstance(value, (list, tuple)):
            return [str(v).strip() for v in value if str(v).strip()]
        return value

    @field_validator("chat_ids")
    @classmethod
    def _check_chats(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _CHAT_RE.match(v)]
        if bad:
            raise ValueError(
                f"bad chat id(s) {bad}; expected numeric ids (e.g. -1001234567890) or @channelname"
            )
        return list(dict.fromkeys(value))  # a chat listed twice gets one message

    @field_validator("bot_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _TOKEN_RE.match(value.get_secret_value().strip()):
            raise ValueError("expected the bot token from @BotFather, like 123456789:AAE…")
        return SecretStr(value.get_secret_value().strip()) if value is not None else None

    @field_validator("api_base_url", "signoz_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not _URL_RE.match(value):
            raise ValueError(
                "expected an http:// or https:// URL without query, like https://signoz.example.com"
            )
        return value

    @field_validator("min_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        if self.enabled:
            # Enabled but unusable is a deployment mistake: say so at start-up, not at the first error.
            if self.bot_token is None:
                raise ConfigError(
                    "TELEGRAM_TOKEN is not set but TELEGRAM_ERROR_REPORTING_ENABLED=true: "
                    "expected the bot token from @BotFather"
                )
            if not self.chat_ids:
                raise ConfigError(
                    "TELEGRAM_CHAT_IDS is empty but TELEGRAM_ERROR_REPORTING_ENABLED=true: "
                    "expected a comma list of chat ids, e.g. 123456789,-1001234567890"
                )

    @property
    def dedup_seconds(self) -> float:
        """The dedup window in seconds."""
        return self.dedup_minutes * 60.0

    def token(self) -> str:
        """The bot token in clear (only for building Bot API URLs)."""
        return self.bot_token.get_secret_value() if self.bot_token is not None else ""
