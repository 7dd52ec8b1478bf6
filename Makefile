# The README's commands. Each installs what it needs, so they work on a fresh machine.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install system-deps collector collector-run old-fastapi test lint bench bench-pipeline demo readme dashboards dashboards-check

install:
	$(PIP) install -q -c constraints.txt -e ".[dev]"

# Debian servers the tests run for real: Redis, PostgreSQL, Prometheus/promtool, Alertmanager/amtool.
system-deps:
	bash scripts/install-system-deps.sh

collector:
	bash collector/build.sh

# A FastAPI without native telemetry (< 0.142), for tests/core/test_old_fastapi.py.
old-fastapi:
	test -d .tmp/old-fastapi/fastapi || $(PIP) install -q --no-deps --target .tmp/old-fastapi "fastapi==0.115.14" "starlette==0.46.2"

test: install system-deps collector old-fastapi
	$(PYTHON) -m pytest

lint: install
	$(PYTHON) -m ruff check otel_trader tests benchmarks monitoring/grafana
	$(PYTHON) -m ruff format --check otel_trader
	$(PYTHON) -m mypy

bench: install
	$(PYTHON) benchmarks/overhead.py

# spans/s and metric points/s through SDK -> otelcol-trader -> sink with 0 drops.
bench-pipeline: install collector
	$(PYTHON) benchmarks/pipeline.py

# Our collector with collector/otelcol-config.yaml, in the foreground until Ctrl-C.
collector-run: install
	$(PYTHON) -m otel_trader.cli collector run

# Builds the collector first (≈ 2.5 min the first time); if that fails (no Go), the demo still
# runs and says it fell back to in-process export.
demo: install
	-bash collector/build.sh
	$(PYTHON) -m otel_trader.demo

# Regenerates the README's settings table from otel_trader/settings.py.
readme:
	$(PYTHON) -m otel_trader.settings README.md

# Grafana and SigNoz dashboards and SigNoz alert rules are generated; commit the result.
dashboards:
	$(PYTHON) monitoring/grafana/build_dashboards.py

dashboards-check:
	$(PYTHON) monitoring/grafana/build_dashboards.py --check
