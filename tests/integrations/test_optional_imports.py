"""ccxt, aiohttp, requests and websockets are optional: absent, nothing breaks; present, nothing imports them early.

Each case runs in a fresh interpreter: "not imported" can only be observed in a process that
never imported them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tests.conftest import ROOT

OPTIONAL = ("ccxt", "aiohttp", "requests", "websockets")

_BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}

class NotInstalled(importlib.abc.MetaPathFinder):
    # What an interpreter without these packages does: every import of them fails.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""

_APP = """
import asyncio, json, logging, sys
logging.basicConfig(level=logging.WARNING)
warnings = []
class Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())
logging.getLogger("otel_trader").addHandler(Keep(level=logging.WARNING))

import httpx
from fastapi import FastAPI
import otel_trader

app = FastAPI()
otel_trader.instrument_app(app)

@app.get("/ping")
async def ping():
    return {"ok": True}

async def call():
    # In-process ASGI: a server (uvicorn imports websockets for itself) would blur what we import.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        return (await client.get("/ping")).status_code

status = asyncio.run(call())
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(OPTIONAL))
"""


def _run(code: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEMETRY_", "OTEL_", "OTLP_"))}
    env.update(TELEMETRY_ENABLED="true", TELEMETRY_EXPORTER="none", TELEMETRY_ENV_FILE="none", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_absent_libraries_are_skipped_silently() -> None:
    code = textwrap.dedent(_BLOCKER.format(blocked=OPTIONAL)) + f"OPTIONAL = {OPTIONAL!r}\n" + textwrap.dedent(_APP)
    code += textwrap.dedent(
        """
        try:
            import ccxt  # the blocker really hides it
            hidden = False
        except ModuleNotFoundError:
            hidden = True
        print(json.dumps({"status": status, "loaded": loaded, "warnings": warnings, "hidden": hidden}))
        """
    )
    result = _run(code)
    assert result == {"status": 200, "loaded": [], "warnings": [], "hidden": True}


def test_installed_libraries_are_instrumented_when_first_imported() -> None:
    code = f"OPTIONAL = {OPTIONAL!r}\n" + textwrap.dedent(_APP)
    code += textwrap.dedent(
        """
        before = loaded
        import ccxt, ccxt.async_support, requests, aiohttp
        from websockets.asyncio import client as ws_client
        instrumented = {
            "ccxt": getattr(ccxt.binance.create_order, "_otel_trader_wrapped", False),
            "ccxt.async_support": getattr(ccxt.async_support.okx.fetch_balance, "_otel_trader_wrapped", False),
            "requests": getattr(requests.Session.send, "opentelemetry_instrumentation_requests_applied", False),
            "aiohttp": hasattr(aiohttp.ClientSession.__init__, "__wrapped__"),
            "websockets": hasattr(ws_client.ClientConnection.process_event, "__wrapped__"),
        }
        print(json.dumps({"status": status, "before": before, "instrumented": instrumented, "warnings": warnings}))
        """
    )
    result = _run(code)
    assert result["status"] == 200 and result["warnings"] == []
    assert result["before"] == []  # configured and serving, yet none of them imported
    assert result["instrumented"] == dict.fromkeys(
        ("ccxt", "ccxt.async_support", "requests", "aiohttp", "websockets"), True
    )
