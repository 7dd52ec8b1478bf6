"""``test_connection``: is the bot token accepted (``getMe``), and optionally do the chats get a message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_trader.telegram.api import BotApi
    from otel_trader.telegram.identity import ServiceIdentity

__all__ = ["ConnectionResult", "check_connection"]


@dataclass(frozen=True)
class ConnectionResult:
    """Result of :meth:`TelegramErrorReporter.test_connection`; truthy when the bot token works."""

    ok: bool
    bot_username: str | None = None
    bot_id: int | None = None
    error: str | None = None
    #: chat id → ``"ok"`` or the error, when a test message was sent.
    chats: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if not self.ok:
            return f"failed: {self.error}"
        chats = "".join(f", chat {c}: {r}" for c, r in self.chats.items())
        return f"ok: connected as @{self.bot_username}{chats}"

    def as_dict(self) -> dict[str, Any]:
        """Plain dict form (for JSON health output)."""
        return {
            "ok": self.ok,
            "bot_username": self.bot_username,
            "bot_id": self.bot_id,
            "error": self.error,
            "chats": dict(self.chats),
        }


async def check_connection(
    api: BotApi, chat_ids: list[str], identity: ServiceIdentity, send_message: bool = False
) -> ConnectionResult:
    """Call ``getMe`` on ``api``; with ``send_message`` post a test message to every chat too.

    Not ok when the token is refused or any chat did not get the message. ``api`` stays open.
    """
    me = await api.get_me()
    if not me.ok:
        where = f"HTTP {me.status}: " if me.status else ""
        return ConnectionResult(False, error=f"{where}{me.description}")
    info = me.result if isinstance(me.result, dict) else {}
    chats: dict[str, str] = {}
    if send_message:
        text = f"✅ otel-trader error reporting test from <b>{identity.service_name}</b> [{identity.environment}]"
        for chat_id in chat_ids:
            sent = await api.send_message(chat_id, text)
            chats[chat_id] = "ok" if sent.ok else f"HTTP {sent.status}: {sent.description}"
    return ConnectionResult(
        ok=all(r == "ok" for r in chats.values()),
        bot_username=info.get("username"),
        bot_id=info.get("id"),
        error=None if all(r == "ok" for r in chats.values()) else "some chats failed",
        chats=chats,
    )
