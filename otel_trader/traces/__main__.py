"""``python -m otel_trader.traces``: the same as ``otel-trader traces``."""

from otel_trader.traces.cli import main

raise SystemExit(main())
