"""``python -m otel_trader.traces``: the same as ``otel-trader traces``."""

from .cli import main

raise SystemExit(main())
