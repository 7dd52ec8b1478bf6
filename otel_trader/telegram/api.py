"""A minimal Telegram Bot API client: ``getMe`` and ``sendMessage``, outcomes classified.

Every call returns an :class:`ApiResult` (never raises for HTTP or network trouble), so the sender
decides per outcome: retry, wait ``retry_after``, drop the chat, or stop on a bad token. Calls
run with OpenTelemetry instrumentation suppressed: the bot token is in the URL path, and error
reports must not create traces (or fail and report themselves).

This module imports httpx; the rest of the package only imports it when a reporter starts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from opentelemetry.instrumentation.utils import suppress_instrumentation

from otel_trader.redaction import RedactingFilter, redact_text

__all__ = ["ApiResult", "BotApi", "Outcome", "classify"]

Outcome = Literal["ok", "throttled", "retry", "bad_token", "bad_chat", "migrated", "bad_markup", "rejected"]

_BAD_CHAT = (
    "chat not found",
    "chat_id is empty",
    "peer_id_invalid",
    "user not found",
    "bot was blocked",
    "bot was kicked",
    "not a member",
    "user is deactivated",
    "have no rights to send",
    "not enough rights",
)


@dataclass(frozen=True)
class ApiResult:
    """What one Bot API call came to."""

    outcome: Outcome
    status: int | None = None
    description: str = ""
    retry_after: float | None = None
    migrate_to: str | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        """Whether Telegram accepted the call."""
        return self.outcome == "ok"


def classify(status: int, body: Any) -> ApiResult:
    """Map an HTTP status and Telegram's JSON body to an outcome."""
    if not isinstance(body, dict):
        body = {}
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    code = body.get("error_code") if isinstance(body.get("error_code"), int) else status
    description = redact_text(str(body.get("description") or f"HTTP {status}"))[:300]
    if body.get("ok") is True and 200 <= status < 300:
        return ApiResult("ok", status, result=body.get("result"))
    retry_after = params.get("retry_after")
    retry_after = float(retry_after) if isinstance(retry_after, (int, float)) and retry_after >= 0 else None
    if code == 429 or status == 429:
        return ApiResult(
            "throttled", status, description, retry_after=1.0 if retry_after is None else retry_after
        )
    if status >= 500 or code >= 500:
        return ApiResult("retry", status, description, retry_after=retry_after)
    if code == 401 or status == 401 or status == 404:
        # 404 is what the Bot API answers for a token that is not even well-formed.
        return ApiResult("bad_token", status, description)
    if params.get("migrate_to_chat_id") is not None:
        return ApiResult("migrated", status, description, migrate_to=str(params["migrate_to_chat_id"]))
    lowered = description.lower()
    if code == 403 or any(text in lowered for text in _BAD_CHAT):
        return ApiResult("bad_chat", status, description)
    if "can't parse entities" in lowered or "can't find end" in lowered:
        return ApiResult("bad_markup", status, description)
    return ApiResult("rejected", status, description)


def _redact_httpx_logs() -> None:
    # httpx logs every request URL at INFO, and the Bot API has the token in the path. The
    # filter only rewrites secrets (bot tokens, key=value credentials), for every httpx user.
    httpx_logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactingFilter) for f in httpx_logger.filters):
        httpx_logger.addFilter(RedactingFilter())


class BotApi:
    """An httpx.AsyncClient bound to one bot token, with timeouts on every call."""

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        _redact_httpx_logs()
        self._prefix = f"{base_url.rstrip('/')}/bot{token}/"
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
            headers={"User-Agent": "otel-trader-error-reporter"},
        )

    async def call(self, method: str, payload: dict[str, Any] | None = None) -> ApiResult:
        """POST ``method`` with a JSON ``payload``; network failures become a ``retry`` result."""
        try:
            with suppress_instrumentation():
                response = await self._client.post(self._prefix + method, json=payload or {})
        except httpx.HTTPError as exc:
            # The message may include the URL, and so the token.
            return ApiResult("retry", None, redact_text(f"{type(exc).__name__}: {exc}")[:300])
        try:
            body = response.json()
        except ValueError:
            body = None
        return classify(response.status_code, body)

    async def get_me(self) -> ApiResult:
        """``getMe``: the bot's identity, or why the token does not work."""
        return await self.call("getMe")

    async def send_message(self, chat_id: str, text: str, parse_mode: str | None = "HTML") -> ApiResult:
        """``sendMessage`` to one chat, without link previews."""
        payload: dict[str, Any] = {
            "chat_id": chat_id,
            "text": text,
            "link_preview_options": {"is_disabled": True},
        }
        if parse_mode:
            payload["parse_mode"] = parse_mode
        return await self.call("sendMessage", payload)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
