"""A local stand-in for the Telegram Bot API: real HTTP on 127.0.0.1, scriptable answers.

It speaks what the reporter uses: ``POST /bot<token>/getMe`` and ``/bot<token>/sendMessage`` with
JSON bodies, answering ``{"ok": true, "result": …}`` or ``{"ok": false, "error_code", "description",
"parameters": {"retry_after"}}``. Like Telegram it rejects unknown tokens (401), unknown chats
(400 "chat not found"), texts over 4096 UTF-16 units and HTML it cannot parse.
"""

from __future__ import annotations

import html
import json
import threading
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import free_port

TOKEN = "123456789:TEST-token_abcdefghijklmnopqrstuvwxyz"
BOT_USERNAME = "otel_trader_test_bot"
_ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler", "blockquote"}


class _TelegramHtml(HTMLParser):
    """Telegram's HTML rules, strictly: known tags, properly nested, only known entities."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.error: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS:
            self.error = self.error or f"unsupported start tag \"{tag}\""
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.error = self.error or f"can't find end tag corresponding to start tag \"{tag}\""
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            self.error = self.error or "unescaped angle bracket"
        self.text.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ("lt", "gt", "amp", "quot"):
            self.error = self.error or f"unsupported entity &{name};"
        self.text.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.text.append(html.unescape(f"&#{name};"))


def parse_html(text: str) -> tuple[str | None, str]:
    """(error or None, the text as a user sees it)."""
    parser = _TelegramHtml()
    parser.feed(text)
    parser.close()
    if parser.stack and not parser.error:
        parser.error = f"can't find end tag for \"{parser.stack[-1]}\""
    if parser.rawdata:  # a lone '<' or '&' the parser could not take
        parser.error = parser.error or "can't parse entities: unfinished markup"
    return parser.error, "".join(parser.text)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Call:
    """One request the fake received."""

    method: str
    token: str
    chat_id: str | None
    text: str | None
    parse_mode: str | None
    status: int
    at: float
    #: What the user would see (HTML parsed), for accepted sendMessage calls.
    visible: str | None = None


@dataclass
class FakeTelegram:
    """State and script of the fake; tests change it between cases (``reset()``)."""

    url: str = ""
    tokens: set[str] = field(default_factory=lambda: {TOKEN})
    chats: set[str] = field(default_factory=lambda: {"1001", "1002", "1003"})
    #: chat id (or "*") → queued (status, body) answers, used before normal behaviour.
    script: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    delay: float = 0.0
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.tokens = {TOKEN}
            self.chats = {"1001", "1002", "1003"}
            self.script = {}
            self.delay = 0.0
            self.calls = []

    def answer(self, chat_id: str, status: int, description: str = "", **parameters: Any) -> None:
        """Queue one scripted answer for ``chat_id`` ("*" for any chat)."""
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        self.script.setdefault(chat_id, []).append((status, body))

    def sent(self, chat_id: str | None = None) -> list[Call]:
        """Accepted sendMessage calls (optionally to one chat)."""
        with self.lock:
            return [
                c for c in self.calls
                if c.method == "sendMessage" and c.status == 200 and (chat_id is None or c.chat_id == chat_id)
            ]

    def attempts(self, chat_id: str | None = None) -> list[Call]:
        """Every sendMessage call, accepted or not."""
        with self.lock:
            return [c for c in self.calls if c.method == "sendMessage" and (chat_id is None or c.chat_id == chat_id)]

    async def handle(self, request: Request) -> JSONResponse:
        token, method = request.path_params["token"], request.path_params["method"]
        try:
            payload = await request.json()
        except ValueError:
            payload = {}
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        chat_id = str(payload["chat_id"]) if "chat_id" in payload else None
        status, body, visible = self._respond(token, method, payload, chat_id)
        with self.lock:
            self.calls.append(
                Call(method, token, chat_id, payload.get("text"), payload.get("parse_mode"), status,
                     time.monotonic(), visible)
            )
        return JSONResponse(body, status_code=status)

    async def slack(self, request: Request) -> JSONResponse:
        """A Slack incoming webhook (for Alertmanager's slack_configs)."""
        payload = await request.json()
        with self.lock:
            self.calls.append(Call("slack", "", payload.get("channel"), json.dumps(payload), None, 200,
                                   time.monotonic()))
        return JSONResponse("ok")

    def _respond(self, token: str, method: str, payload: dict[str, Any], chat_id: str | None) -> tuple[int, dict[str, Any], str | None]:
        def error(status: int, description: str) -> tuple[int, dict[str, Any], None]:
            return status, {"ok": False, "error_code": status, "description": description}, None

        if token not in self.tokens:
            return error(401, "Unauthorized")
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": 123456789, "is_bot": True, "first_name": "Test",
                                                "username": BOT_USERNAME}}, None
        if method != "sendMessage":
            return error(404, "Not Found")
        with self.lock:
            for key in (chat_id or "", "*"):
                if self.script.get(key):
                    status, body = self.script[key].pop(0)
                    return status, body, None
        if chat_id not in self.chats:
            return error(400, "Bad Request: chat not found")
        text = payload.get("text") or ""
        if payload.get("parse_mode") == "HTML":
            problem, visible = parse_html(text)
            if problem:
                return error(400, f"Bad Request: can't parse entities: {problem}")
        else:
            visible = text
        if not visible.strip():
            return error(400, "Bad Request: message text is empty")
        if utf16_len(visible) > 4096:
            return error(400, "Bad Request: message is too long")
        chat: dict[str, Any] = (
            {"id": int(chat_id), "type": "supergroup" if chat_id.startswith("-") else "private"}
            if chat_id.lstrip("-").isdigit() else {"id": -1009999, "type": "channel", "username": chat_id[1:]}
        )
        message = {"message_id": len(self.calls) + 1, "date": int(time.time()), "chat": chat, "text": visible}
        return 200, {"ok": True, "result": message}, visible


class FakeTelegramServer:
    """Runs a :class:`FakeTelegram` under uvicorn in a thread on a free loopback port."""

    def __init__(self) -> None:
        self.fake = FakeTelegram()
        self.port = free_port()
        self.fake.url = f"http://127.0.0.1:{self.port}"
        app = Starlette(routes=[
            Route("/bot{token}/{method}", self.fake.handle, methods=["POST", "GET"]),
            Route("/slack/{rest:path}", self.fake.slack, methods=["POST"]),
        ])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="fake-telegram", daemon=True)

    def start(self) -> FakeTelegramServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("fake Telegram server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
