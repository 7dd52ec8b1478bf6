# The README's commands. Each installs what it needs, so they work on a fresh machine.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip

.PHONY: install setup system-deps collector collector-run old-fastapi test lint lint-checks check ci bench bench-http bench-instructions bench-bytecodes bench-pipeline bench-tier helm-values bench-traces bench-ccxt demo readme dashboards dashboards-check

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

# Every set-up step the suite needs, explicit; each is idempotent. Within one `make` call a
# shared prerequisite runs once: `make lint test` (what .ci/run does) installs once.
setup: install system-deps collector old-fastapi

test: setup
	$(PYTHON) -m pytest

lint: install lint-checks

# The checks alone, on an already set-up machine.
lint-checks:
	$(PYTHON) -m ruff check otel_trader tests benchmarks monitoring scripts
	$(PYTHON) -m ruff format --check otel_trader
	$(PYTHON) -m mypy
	$(PYTHON) -m monitoring.generate --check

# Lint and the whole suite without any set-up step (after `make setup`).
check: lint-checks
	$(PYTHON) -m pytest

# What CI runs: each set-up once, then lint and the suite.
ci: lint test

# µs per request of each variant against bare FastAPI, interleaved in one process.
bench: install
	$(PYTHON) benchmarks/overhead.py
	$(PYTHON) benchmarks/span_start.py

# Real uvicorn processes on loopback driven by wrk (system-deps installs it), exporting to our collector.
bench-http: install system-deps collector
	$(PYTHON) benchmarks/loopback.py

# Instructions per request of real uvicorn servers under callgrind: independent of the machine's load.
bench-instructions: install system-deps collector
	$(PYTHON) benchmarks/instructions.py

# Bytecodes per request of the server span, per function (in process, deterministic).
bench-bytecodes: install
	$(PYTHON) benchmarks/bytecodes.py

# spans/s and metric points/s through SDK -> otelcol-trader -> sink with 0 drops.
bench-pipeline: install collector
	$(PYTHON) benchmarks/pipeline.py

# spans/s with 0 drops: agent -> 2 gateways vs the single collector (both tail-sampling).
bench-tier: install collector
	$(PYTHON) benchmarks/tier.py

# Kubernetes: regenerate deploy/helm/values-*.yaml from collector/*.yaml.
helm-values:
	$(PYTHON) deploy/helm/render_values.py

# Reading and drawing traces of 1k–100k spans (`otel-trader traces`).
bench-traces: install
	$(PYTHON) benchmarks/traces_render.py

# Overhead per ccxt call (sync and async) of the exchange integration against the mock venue.
bench-ccxt: install
	$(PYTHON) benchmarks/ccxt_overhead.py

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
	$(PYTHON) scripts/settings_table.py README.md

# Generated, commit the result: Grafana and SigNoz dashboards, Prometheus and SigNoz alert rules,
# and the metric table of docs/DESIGN.md and alert table of monitoring/README.md (monitoring/generate/).
dashboards:
	$(PYTHON) -m monitoring.generate

dashboards-check:
	$(PYTHON) -m monitoring.generate --check
