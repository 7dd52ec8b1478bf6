"""Regression: every SQLAlchemy span of an async engine ends (integrations/sqlalchemy.py).

Run in a fresh interpreter, because the bug depends on sqlalchemy.ext.asyncio being imported
only after telemetry is configured (as in the demo API), which this test process cannot
guarantee once another test has imported it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys
    os.environ.update(TELEMETRY_ENABLED="true", TELEMETRY_EXPORTER="none")
    assert "sqlalchemy.ext.asyncio" not in sys.modules
    import otel_trader
    from opentelemetry.sdk.trace import SpanProcessor

    live, ended = {}, []

    class Track(SpanProcessor):
        def on_start(self, span, parent_context=None):
            live[span.context.span_id] = span.name

        def on_end(self, span):
            live.pop(span.context.span_id, None)
            ended.append(span.name)

    manager = otel_trader.get_telemetry_manager()
    manager.tracer_provider.add_span_processor(Track())
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine  # imported after configuration

    async def main():
        engine = create_async_engine("sqlite+aiosqlite:///" + sys.argv[1])
        async with engine.connect() as conn:
            for _ in range(3):
                await conn.execute(text("SELECT 1"))
        await engine.dispose()

    asyncio.run(main())
    print(json.dumps({"live": sorted(live.values()), "ended": ended}))
    """
)


@pytest.mark.timeout(60)
def test_async_engine_spans_all_end(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "db.sqlite")],
        capture_output=True, text=True, timeout=50, check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["live"] == []
    assert sum(1 for name in result["ended"] if name.startswith("SELECT")) == 3
