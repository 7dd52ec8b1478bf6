"""``python -m otel_trader.demo``: run the demo (see :mod:`otel_trader.demo.runner`)."""

from __future__ import annotations

from otel_trader.demo.runner import main

raise SystemExit(main())
