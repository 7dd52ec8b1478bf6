"""The two-tier deployment with the real binaries on loopback: agents -> 2 gateways -> SigNoz stand-ins.

The apps are ``tier_load.py`` processes sending parts of the same deterministic traces (a
trace's spans come from several services, processes and agents), plus a real instrumented
uvicorn app in the failover test. Each gateway exports to its own sink, so what each gateway
decided is visible separately; the gateways' and agents' own metrics (:8888) are checked too.
Prometheus is the Debian 2.42 server, receiving remote write.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otel_trader.collector import CollectorProcess, Tier, free_ports, http_get, start_tier
from tests.support import stop_process, wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COLLECTOR_DIR = ROOT / "collector"
LOAD_SCRIPT = HERE / "tier_load.py"

_spec = importlib.util.spec_from_file_location("tier_load", LOAD_SCRIPT)
assert _spec is not None and _spec.loader is not None
plan = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(plan)

#: Every collector of these tests: short batch and retry intervals so recovery takes seconds.
TIER_ENV = {
    "OTELCOL_BATCH_TIMEOUT": "200ms",
    "OTELCOL_RETRY_INITIAL_INTERVAL": "500ms",
    "OTELCOL_RETRY_MAX_INTERVAL": "2s",
    "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
    "OTELCOL_DEPLOYMENT_ENVIRONMENT": "ci-tier",
    "OTELCOL_LOG_LEVEL": "info",
}
DECISION_WAIT_S = 3


def gateway_env(remote_write: str | None = None, **extra: str) -> dict[str, str]:
    """Gateways: a short decision wait; remote write to ``remote_write`` or to a dead port."""
    target = remote_write or f"http://127.0.0.1:{free_ports(1)[0]}/api/v1/write"
    return {
        "OTELCOL_TAIL_DECISION_WAIT": f"{DECISION_WAIT_S}s",
        "OTELCOL_PROMETHEUS_REMOTE_WRITE_ENDPOINT": target,
        "OTELCOL_REMOTE_WRITE_TIMEOUT": "5s",
        **extra,
    }


# -- helpers -----------------------------------------------------------------------------------


class Load:
    """One ``tier_load.py`` process (an app process of the plan)."""

    def __init__(self, workdir: Path, endpoint: str, **options: Any) -> None:
        name = f"{options['part']}-{options['instance']}"
        self.out = workdir / f"load-{name}.out"
        self.err = workdir / f"load-{name}.err"
        argv = [sys.executable, str(LOAD_SCRIPT), "--endpoint", endpoint]
        for key, value in options.items():
            argv += [f"--{key.replace('_', '-')}", str(value)]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTLP_", "TELEMETRY_"))}
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def result(self, timeout: float = 120.0) -> dict[str, Any]:
        code = self.process.wait(timeout)
        assert code == 0, f"load process failed ({code}):\n{self.err.read_text()[-3000:]}"
        return json.loads(self.out.read_text().strip().splitlines()[-1])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def start_plan(workdir: Path, run: str, traces: int, rate: float, agents: list[str]) -> list[Load]:
    """The plan's app processes: two api instances (on different agents), one bot, one exchange."""
    start_at = time.time() + 4.0  # every process has imported the SDK by then
    common = {"run": run, "traces": traces, "rate": rate, "start_at": f"{start_at:.3f}"}
    second = agents[1 % len(agents)]
    return [
        Load(workdir, agents[0], part="api", service="tier-api", instance="api-1", every=2, offset=0, **common),
        Load(workdir, second, part="api", service="tier-api", instance="api-2", every=2, offset=1, **common),
        Load(workdir, second, part="bot", service="tier-bot", instance="bot-1", **common),
        Load(workdir, agents[0], part="exchange", service="tier-exchange", instance="exchange-1", **common),
    ]


def spans_by_trace(sinks: list[Any], run: str) -> dict[str, dict[int, list[str]]]:
    """trace id -> {sink index -> span ids that sink received} (spans of this run only)."""
    out: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for index, sink in enumerate(sinks):
        for span in sink.spans():
            if span["resource"].get("test.run_id") == run:
                out[span["traceId"]][index].append(span["spanId"])
    return out


def sum_metric(collectors: list[CollectorProcess], name: str, **labels: str) -> float:
    return sum(c.self_metric(name, **labels) for c in collectors)


def tail_decided(gateways: list[CollectorProcess]) -> float:
    return sum_metric(gateways, "otelcol_processor_tail_sampling_global_count_traces_sampled_total")


def latest_points(sink: Any, metric: str) -> dict[tuple, float]:
    """(service.instance.id, sorted data point attributes) -> latest cumulative value of ``metric``."""
    latest: dict[tuple, tuple[int, float]] = {}
    for m in sink.metrics():
        if m["name"] != metric:
            continue
        instance = m["resource"].get("service.instance.id")
        for dp in m.get("sum", {}).get("dataPoints", []):
            attrs = tuple(sorted((kv["key"], str(next(iter(kv["value"].values())))) for kv in dp.get("attributes", [])))
            key = (instance, attrs)
            when = int(dp["timeUnixNano"])
            value = float(dp.get("asInt", dp.get("asDouble", 0)))
            if key not in latest or when >= latest[key][0]:
                latest[key] = (when, value)
    return {k: v for k, (_, v) in latest.items()}


@pytest.fixture
def tiers() -> Iterator[list[Tier]]:
    started: list[Tier] = []
    try:
        yield started
    finally:
        for tier in started:
            tier.stop()


# -- the configs -------------------------------------------------------------------------------


def _validate(binary: Path, configs: list[Path], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "SIGNOZ_", "SINK_"))}
    clean.update(env)
    argv = [str(binary), "validate"] + [f"--config={c}" for c in configs]
    return subprocess.run(argv, env=clean, capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "configs",
    [
        ["otelcol-config.yaml", "agent.yaml"],
        ["otelcol-config.yaml", "agent.yaml", "agent-dns.yaml"],
        ["gateway.yaml"],
    ],
    ids=["agent-static", "agent-dns", "gateway"],
)
def test_tier_configs_validate_with_their_defaults(otelcol_binary: Path, tmp_path: Path, configs: list[str]) -> None:
    r = _validate(otelcol_binary, [COLLECTOR_DIR / c for c in configs], {"OTELCOL_STORAGE_DIR": str(tmp_path / "q")}, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.timeout(60)
def test_the_agent_never_routes_metrics_by_trace_id_and_gateway_list_is_a_list(otelcol_binary: Path, tmp_path: Path) -> None:
    # The merged agent config as the collector sees it: one resolver per exporter, the static
    # list parsed from OTELCOL_GATEWAYS as a list, metrics by service, top-level persistent queue.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "SIGNOZ_", "SINK_"))}
    clean.update(OTELCOL_GATEWAYS="[10.0.0.1:4317, 10.0.0.2:4317]", OTELCOL_STORAGE_DIR=str(tmp_path / "q"))
    out = subprocess.run(
        [str(otelcol_binary), "print-config", "--mode", "unredacted", "--format", "json",
         f"--config={COLLECTOR_DIR / 'otelcol-config.yaml'}", f"--config={COLLECTOR_DIR / 'agent.yaml'}"],
        env=clean, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=True,
    ).stdout
    config = json.loads(out[out.index("{"):])
    exporters = config["exporters"]
    assert exporters["loadbalancing/traces"]["routing_key"] == "traceID"
    assert exporters["loadbalancing/metrics"]["routing_key"] == "service"
    for name in ("loadbalancing/traces", "loadbalancing/metrics", "loadbalancing/logs"):
        lb = exporters[name]
        assert lb["resolver"] == {"static": {"hostnames": ["10.0.0.1:4317", "10.0.0.2:4317"]}}, lb["resolver"]
        assert lb["sending_queue"]["storage"] == "file_storage/queue"
        assert lb["sending_queue"]["enabled"] is True and lb["retry_on_failure"]["enabled"] is True
        assert lb["protocol"]["otlp"]["sending_queue"]["enabled"] is False  # no per-gateway queue
    pipelines = config["service"]["pipelines"]
    for name, pipeline in pipelines.items():
        if name == "traces/spanmetrics":
            assert pipeline["exporters"] == ["spanmetrics"]
        else:  # nothing leaves an agent except through the gateways
            assert all(e.startswith("loadbalancing/") for e in pipeline["exporters"]), (name, pipeline)
    assert pipelines["metrics/spanmetrics"]["exporters"] == ["loadbalancing/metrics"]


def test_printed_defaults_are_the_configs_defaults() -> None:
    import re

    from otel_trader.collector import ROUTING_DEFAULTS

    text = "".join((COLLECTOR_DIR / f).read_text() for f in ("agent.yaml", "agent-dns.yaml", "gateway.yaml"))
    found = dict(re.findall(r"\$\{env:([A-Z0-9_]+):-([^}]*)\}", text))
    for name, default in ROUTING_DEFAULTS.items():
        assert found.get(name) == default, (name, found.get(name), default)


# -- whole traces, one gateway each ------------------------------------------------------------


@pytest.mark.timeout(240)
def test_every_trace_is_whole_on_one_gateway_and_sampling_keeps_whole_traces(
    otelcol_binary: Path, fleet: Any, tmp_path: Path, tiers: list[Tier]
) -> None:
    traces, rate, percent = 2000, 250.0, 20
    sinks = [fleet.sink("sink-gw1"), fleet.sink("sink-gw2")]
    tier = start_tier(
        [s.otlp_grpc_endpoint for s in sinks], tmp_path, gateways=2, agents=2, binary=otelcol_binary,
        env=TIER_ENV, gateway_env=gateway_env(OTELCOL_TAIL_SAMPLE_PERCENT=str(percent)),
    )
    tiers.append(tier)
    run = f"whole-{time.time_ns()}"
    loads = start_plan(tmp_path, run, traces, rate, [a.endpoints.otlp_grpc for a in tier.agents])
    results = [load.result() for load in loads]
    sent_spans = sum(r["spans"] for r in results)
    assert sent_spans == traces * plan.SPANS_PER_TRACE
    # Every span the apps produced was exported to an agent; none failed.
    assert [r["failed"] for r in results] == [0, 0, 0, 0]
    assert sum(r["exported"] for r in results) == sent_spans

    gateways, agents = tier.gateways, tier.agents
    wait_for(lambda: tail_decided(gateways) >= traces, 60, "a sampling decision for every trace")
    sampled_traces = sum_metric(
        gateways, "otelcol_processor_tail_sampling_global_count_traces_sampled_total", sampled="true"
    )
    wait_for(
        lambda: sum(len(s) for t in spans_by_trace(sinks, run).values() for s in t.values())
        >= sampled_traces * plan.SPANS_PER_TRACE,
        30, "the sampled spans at the sinks",
    )
    time.sleep(1.0)  # anything extra (a duplicate, a straggler) would arrive now
    at_sinks = spans_by_trace(sinks, run)

    # Counts reconcile: apps -> agents -> gateways -> decisions -> sinks, nothing lost or doubled.
    assert sum_metric(agents, "otelcol_receiver_accepted_spans_total") == sent_spans
    assert sum_metric(agents, "otelcol_exporter_sent_spans_total", exporter="loadbalancing/traces") == sent_spans
    assert sum_metric(agents, "otelcol_exporter_send_failed_spans_total") == 0
    assert sum_metric(agents, "otelcol_loadbalancer_backend_outcome_total", success="false") == 0
    assert sum_metric(gateways, "otelcol_receiver_accepted_spans_total") == sent_spans
    # A trace split over two gateways would be "new" on both: exactly one new trace per trace.
    assert sum_metric(gateways, "otelcol_processor_tail_sampling_new_trace_id_received_total") == traces
    assert tail_decided(gateways) == traces
    assert sum_metric(gateways, "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total") == 0
    # Those zeros are real readings: the series the tier alerts watch exist under these names.
    for collector, name in [(gateways[0], "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total"),
                            (agents[0], "otelcol_loadbalancer_backend_outcome_total"),
                            (agents[0], "otelcol_loadbalancer_num_backends")]:
        assert name in http_get(collector.endpoints.telemetry)[1], name
    assert sum_metric(agents, "otelcol_loadbalancer_num_backends") == 2 * len(agents)
    for gateway, sink in zip(gateways, sinks, strict=True):
        mine = [t for t in at_sinks.values() if sinks.index(sink) in t]
        assert gateway.self_metric("otelcol_exporter_sent_spans_total", exporter="otlp_grpc/signoz") == sum(
            len(t[sinks.index(sink)]) for t in mine
        )
    # Both gateways got a fair share of the traces (consistent hashing over 2 backends).
    shares = [g.self_metric("otelcol_processor_tail_sampling_new_trace_id_received_total") / traces for g in gateways]
    assert all(0.3 < s < 0.7 for s in shares), shares

    # Every kept trace is whole (all 5 spans, no duplicate) and came from one gateway only.
    assert set(at_sinks) <= {plan.trace_id_hex(run, i) for i in range(traces)}
    for trace_id, per_sink in at_sinks.items():
        assert len(per_sink) == 1, f"trace {trace_id} exported by {len(per_sink)} gateways"
        (span_ids,) = per_sink.values()
        assert len(span_ids) == len(set(span_ids)) == plan.SPANS_PER_TRACE, (trace_id, span_ids)
    assert len(at_sinks) == sampled_traces

    # The policies: every error, slow and rejected-order trace is kept; about `percent` % of the rest.
    kept = set(at_sinks)
    for must in ("error", "slow", "rejected"):
        wanted = {plan.trace_id_hex(run, i) for i in range(traces) if plan.kind(i) == must}
        assert wanted <= kept, f"{len(wanted - kept)} {must} traces dropped"
    ok = [plan.trace_id_hex(run, i) for i in range(traces) if plan.kind(i) == "ok"]
    share = len(kept.intersection(ok)) / len(ok)
    assert percent / 100 - 0.06 < share < percent / 100 + 0.06, share
    print(f"whole traces: shares={shares} kept={len(kept)} of {traces} baseline share={share:.3f}")

    # Metrics are routed by service, never by trace id: each service's metrics (its own and the
    # span metrics its agent computed) were exported by exactly one gateway.
    services: dict[str, set[int]] = defaultdict(set)
    for index, sink in enumerate(sinks):
        for m in sink.metrics():
            if m["resource"].get("test.run_id") == run:
                services[m["resource"]["service.name"]].add(index)
    assert set(services) == {"tier-api", "tier-bot", "tier-exchange"}, services
    assert all(len(where) == 1 for where in services.values()), services

    # Span metrics are exact: computed on the agents from every span, before sampling.
    expected = {"tier-api": 2 * traces, "tier-bot": 2 * traces, "tier-exchange": traces}

    def span_counts() -> dict[str, float] | None:
        per_service: dict[str, float] = defaultdict(float)
        for sink in sinks:
            for (instance, _attrs), value in latest_points(sink, "traces.span.metrics.calls").items():
                if instance and instance.split("-")[0] in ("api", "bot", "exchange"):
                    per_service[f"tier-{instance.split('-')[0]}"] += value
        return dict(per_service) if dict(per_service) == expected else None

    wait_for(span_counts, 30, f"span metric counts {expected}")
    streams = [set(latest_points(sink, "traces.span.metrics.calls")) for sink in sinks]
    assert not streams[0] & streams[1], "a span-metric series was written by both gateways"


# -- a gateway killed and restarted ------------------------------------------------------------


class App:
    """tests/e2e/apps/trader_app.py's API under uvicorn: a real instrumented app sending to an agent."""

    def __init__(self, workdir: Path, otlp_endpoint: str) -> None:
        self.port = free_ports(1)[0]
        self.err = workdir / "app.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "OTLP_", "TELEMETRY_"))}
        env.update(
            PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", TELEMETRY_ENABLED="true", OTLP_ENDPOINT=otlp_endpoint,
            SERVICE_NAME="tier-app", SERVICE_VERSION="1.0.0", ENVIRONMENT="ci-tier", METRIC_EXPORT_INTERVAL_SECONDS="1",
            OTEL_BSP_SCHEDULE_DELAY="200", DATABASE_URL=f"sqlite:///{workdir / 'app.db'}",
            # /quote touches neither Redis nor the exchange; nothing listens on these.
            REDIS_URL=f"redis://127.0.0.1:{free_ports(1)[0]}/0", EXCHANGE_URL=f"http://127.0.0.1:{free_ports(1)[0]}",
        )
        argv = [sys.executable, "-m", "uvicorn", "--factory", "tests.e2e.apps.trader_app:create_api",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        with self.err.open("wb") as err:
            self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=err, stderr=err, stdin=subprocess.DEVNULL)
        self.statuses: list[int | str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wait_ready(self) -> App:
        def ready() -> bool:
            assert self.process.poll() is None, self.err.read_text()[-3000:]
            return http_get(f"http://127.0.0.1:{self.port}/health", timeout=1.0)[0] == 200

        wait_for(ready, 60, "the app")
        return self

    def hammer(self, interval: float = 0.05) -> None:
        """GET /quote every ``interval`` s in a thread until :meth:`stop_hammer`; records each outcome."""

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.statuses.append(http_get(f"http://127.0.0.1:{self.port}/quote/BTCUSDT", timeout=5.0)[0])
                except OSError as exc:
                    self.statuses.append(repr(exc))
                self._stop.wait(interval)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop_hammer(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def stop(self) -> None:
        self.stop_hammer()
        stop_process(self.process, 15)


@pytest.mark.timeout(300)
def test_gateway_killed_and_restarted_loses_only_its_decision_buffer(
    otelcol_binary: Path, fleet: Any, tmp_path: Path, tiers: list[Tier]
) -> None:
    traces, rate = 3000, 150.0
    sinks = [fleet.sink("sink-gw1"), fleet.sink("sink-gw2")]
    tier = start_tier(
        [s.otlp_grpc_endpoint for s in sinks], tmp_path, gateways=2, agents=1, binary=otelcol_binary,
        env=TIER_ENV,
        # Every trace is kept, so whatever is missing at the sinks was lost, not sampled out.
        gateway_env=gateway_env(OTELCOL_TAIL_SAMPLE_PERCENT="100"),
        # The outage (8 s) is shorter than the per-gateway retry: batches wait, none is re-sent.
        agent_env={"OTELCOL_GATEWAY_RETRY_MAX_ELAPSED_TIME": "60s"},
    )
    tiers.append(tier)
    agent, gw2 = tier.agent, tier.gateways[1]
    app = App(tmp_path, agent.endpoints.otlp_grpc).wait_ready()
    run = f"failover-{time.time_ns()}"
    try:
        app.hammer()
        loads = start_plan(tmp_path, run, traces, rate, [agent.endpoints.otlp_grpc])
        start_at = float(loads[0].process.args[loads[0].process.args.index("--start-at") + 1])  # type: ignore[union-attr]
        time.sleep(max(0.0, start_at + 6.0 - time.time()))

        # What the killed gateway holds in memory, undecided: the bound on what a crash loses.
        on_memory = gw2.self_metric("otelcol_processor_tail_sampling_sampling_traces_on_memory")
        kill_at = time.time()
        gw2.kill()
        queued = []
        while time.time() < kill_at + 8.0:
            queued.append(agent.self_metric("otelcol_exporter_queue_size", exporter="loadbalancing/traces"))
            time.sleep(0.25)
        gw2.start()
        restart_at = time.time()
        results = [load.result() for load in loads]
        app.stop_hammer()
    finally:
        app.stop()

    assert [r["failed"] for r in results] == [0, 0, 0, 0], results
    # The app never noticed: every request answered 200 while a gateway was down.
    assert len(app.statuses) > 200 and set(app.statuses) == {200}, {s for s in app.statuses if s != 200}
    # The agent held the data in its top-level queue during the outage and dropped nothing.
    assert max(queued) >= 1, queued
    wait_for(lambda: agent.self_metric("otelcol_exporter_queue_size", exporter="loadbalancing/traces") == 0,
             60, "the agent's queue drained")
    assert agent.self_metric("otelcol_exporter_send_failed_spans_total") == 0
    assert agent.self_metric("otelcol_exporter_enqueue_failed_spans_total") == 0

    def settled() -> dict[str, dict[int, list[str]]] | None:
        first = spans_by_trace(sinks, run)
        time.sleep(DECISION_WAIT_S + 1.0)
        second = spans_by_trace(sinks, run)
        same = {k: {i: len(v) for i, v in s.items()} for k, s in first.items()} == {
            k: {i: len(v) for i, v in s.items()} for k, s in second.items()
        }
        return second if same else None

    at_sinks = wait_for(settled, 90, "the sinks to settle")
    sent_at = {int(i): t for r in results for i, t in r["sent_at"].items()}
    window = (kill_at - DECISION_WAIT_S - 2.0, kill_at + 1.0)
    lost, partial, duplicated, outside = [], [], [], []
    for i in range(traces):
        per_sink = at_sinks.get(plan.trace_id_hex(run, i), {})
        assert len(per_sink) <= 1, f"trace {i} on both gateways"
        ids = [s for spans in per_sink.values() for s in spans]
        if len(ids) != len(set(ids)):
            # Delivery is at least once: a request the gateway took in and exported from, but
            # was killed before answering, is sent again by the agent. Only around the kill.
            duplicated.append(i)
            if not window[0] <= sent_at[i] <= window[1]:
                outside.append((i, sent_at[i] - kill_at, "duplicate"))
            ids = list(set(ids))
        complete = len(ids) == plan.SPANS_PER_TRACE
        if not complete:
            (lost if not ids else partial).append(i)
            if not window[0] <= sent_at[i] <= window[1]:
                outside.append((i, sent_at[i] - kill_at, len(ids)))
    # Only traces that were in the killed gateway's memory at the kill are missing or partial...
    assert not outside, f"incomplete or duplicated traces sent outside the kill window: {outside[:10]}"
    # ...at most what its traces_on_memory gauge showed, plus what it took in between that
    # reading and the kill and the decided traces still in its batch processor (well under a
    # second of its share of the traffic).
    assert len(lost) + len(partial) <= on_memory + rate * 1.0, (len(lost), len(partial), on_memory)
    assert len(duplicated) <= rate * 1.0, duplicated  # at most the requests in flight at the kill
    # Traces sent while the gateway was down waited in the agent and reached it after the
    # restart, whole: the restarted gateway is routed to again.
    during = [i for i in range(traces) if kill_at + 1.0 < sent_at[i] < restart_at]
    on_gw2 = [i for i in during if 1 in at_sinks.get(plan.trace_id_hex(run, i), {})]
    assert during and on_gw2 and all(
        len(at_sinks[plan.trace_id_hex(run, i)][1]) == plan.SPANS_PER_TRACE for i in on_gw2
    )
    assert 0.3 < len(on_gw2) / len(during) < 0.7
    assert gw2.self_metric("otelcol_receiver_accepted_spans_total") > 0
    print(f"kill: on_memory={on_memory:g} lost={len(lost)} partial={len(partial)} duplicated={len(duplicated)} "
          f"max_queue={max(queued):g} "
          f"requests={len(app.statuses)}")


# -- Prometheus: N gateways writing, one consistent series each ---------------------------------


class Prometheus:
    """Debian's /usr/bin/prometheus (2.42) on a free loopback port, receiving remote write only."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed: run `make system-deps`")
        self.port = free_ports(1)[0]
        config = workdir / "prometheus.yml"
        config.write_text("global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n")
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-remote-write-receiver"],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        wait_for(lambda: self._ready(), 30, "prometheus ready")

    def _ready(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        return http_get(f"{self.url}/-/ready", timeout=1.0)[0] == 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def remote_write_url(self) -> str:
        return f"{self.url}/api/v1/write"

    def api(self, path: str, **params: str) -> Any:
        status, body = http_get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=10.0)
        assert status == 200, body
        return json.loads(body)["data"]

    def query(self, promql: str) -> dict[tuple, float]:
        """Instant query -> {sorted label items: value}."""
        return {
            tuple(sorted(r["metric"].items())): float(r["value"][1])
            for r in self.api("query", query=promql)["result"]
        }

    def series(self, selector: str) -> list[dict[str, str]]:
        return list(self.api("series", **{"match[]": selector}))

    def own_samples(self, name: str, **labels: str) -> list[Any]:
        """Samples of Prometheus's own metric `name` matching `labels`, from one scrape."""
        from prometheus_client.parser import text_string_to_metric_families

        body = http_get(f"{self.url}/metrics", timeout=5.0)[1]
        return [
            s
            for f in text_string_to_metric_families(body)
            for s in f.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def own_metric(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.own_samples(name, **labels))

    def stop(self) -> None:
        stop_process(self.process, 20)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    server = Prometheus(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def run_metrics_plan(tmp_path: Path, run: str, agents: list[str], traces: int = 1500) -> list[dict[str, Any]]:
    """The trace plan plus 12 metric-only services (so both gateways own some services)."""
    loads = start_plan(tmp_path, run, traces, 250.0, agents)
    start_at = loads[0].process.args[loads[0].process.args.index("--start-at") + 1]  # type: ignore[union-attr]
    loads.append(
        Load(tmp_path, agents[0], part="metrics", run=run, service="tier-metrics", instance="m", services=12,
             traces=12, rate=1.0, start_at=start_at)
    )
    return [load.result() for load in loads]


SPAN_TOTALS = {"tier-api": 2, "tier-bot": 2, "tier-exchange": 1}  # spans per trace per service


@pytest.mark.timeout(240)
def test_prometheus_gets_one_consistent_series_per_metric_from_two_gateways(
    otelcol_binary: Path, fleet: Any, tmp_path: Path, tiers: list[Tier], prometheus: Prometheus
) -> None:
    traces = 1500
    sink = fleet.sink()
    tier = start_tier(
        sink.otlp_grpc_endpoint, tmp_path, gateways=2, agents=2, binary=otelcol_binary, env=TIER_ENV,
        gateway_env=gateway_env(prometheus.remote_write_url),
    )
    tiers.append(tier)
    run = f"prom-{time.time_ns()}"
    run_metrics_plan(tmp_path, run, [a.endpoints.otlp_grpc for a in tier.agents], traces)

    # Span metrics are exact in Prometheus: one count per service, every span counted once.
    expected = {f"tier-{s}": float(n * traces) for s, n in (("api", 2), ("bot", 2), ("exchange", 1))}

    def span_sums() -> dict[str, float] | None:
        got = {dict(k)["service_name"]: v for k, v in prometheus.query(
            'sum by (service_name) (traces_span_metrics_calls_total{service_name=~"tier-.*"})').items()}
        return got if got == expected else None

    wait_for(span_sums, 60, f"span metric sums {expected}")
    wait_for(lambda: prometheus.query('sum(tier_orders_total{job=~"tier-metrics-.*"})') == {(): 144.0},
             60, "144 orders from 12 services")

    # Both gateways wrote (each owns some services), and neither failed a request.
    written = [g.self_metric("otelcol_exporter_sent_metric_points_total", exporter="prometheusremotewrite")
               for g in tier.gateways]
    assert all(w > 0 for w in written), written
    assert sum_metric(tier.gateways, "otelcol_exporter_send_failed_metric_points_total",
                      exporter="prometheusremotewrite") == 0

    # One series per (process, span name, status) and per (process, side): no writer label, no copy.
    span_series = prometheus.series('traces_span_metrics_calls_total{service_name=~"tier-.*"}')
    keys = [(s["job"], s["instance"], s["span_name"], s["status_code"]) for s in span_series]
    assert len(keys) == len(set(keys)) == 8, sorted(keys)  # api-1, api-2, bot: 2 spans; exchange: ok + error
    assert {k for s in span_series for k in s} == {
        "__name__", "job", "instance", "service_name", "span_name", "span_kind", "status_code"
    }
    order_series = prometheus.series('tier_orders_total{job=~"tier-metrics-.*"}')
    assert len(order_series) == 24 and len({(s["instance"], s["side"]) for s in order_series}) == 24
    target_info = prometheus.series('target_info{job=~"tier-.*"}')
    assert len(target_info) == len({(s["job"], s["instance"]) for s in target_info}) == 16

    # No flapping: no counter ever went down, and Prometheus refused nothing.
    assert set(prometheus.query('resets(traces_span_metrics_calls_total{service_name=~"tier-.*"}[10m])').values()) == {0.0}
    assert set(prometheus.query('resets(tier_orders_total{job=~"tier-metrics-.*"}[10m])').values()) == {0.0}
    assert prometheus.own_metric("prometheus_tsdb_out_of_order_samples_total") == 0
    # One scrape for both numbers: the gateways keep writing between two scrapes.
    writes = {s.labels["code"]: s.value
              for s in prometheus.own_samples("prometheus_http_requests_total", handler="/api/v1/write")}
    assert writes.get("204", 0) > 0 and set(writes) == {"204"}, writes


@pytest.mark.timeout(240)
def test_control_span_metrics_computed_on_the_gateways_clash_in_prometheus(
    otelcol_binary: Path, fleet: Any, tmp_path: Path, tiers: list[Tier], prometheus: Prometheus
) -> None:
    """Control for the test above: span metrics computed behind trace-id routing (on each
    gateway, as a single collector does) are partial per gateway and written by both, so the
    same checks fail. The agents' exact series are renamed out of the way."""
    overlay = tmp_path / "gateway-spanmetrics.yaml"
    overlay.write_text(
        "connectors:\n"
        "  spanmetrics:\n"
        "    namespace: gateway.span.metrics\n"
        "    aggregation_temporality: AGGREGATION_TEMPORALITY_CUMULATIVE\n"
        "    metrics_flush_interval: 1s\n"
        "    resource_metrics_key_attributes: [service.name, service.namespace, service.instance.id]\n"
        "service:\n"
        "  pipelines:\n"
        "    traces/spanmetrics: {receivers: [otlp], processors: [memory_limiter], exporters: [spanmetrics]}\n"
        "    metrics/spanmetrics: {receivers: [spanmetrics], processors: [batch], exporters: [prometheusremotewrite]}\n"
    )
    traces = 1500
    sink = fleet.sink()
    tier = start_tier(
        sink.otlp_grpc_endpoint, tmp_path, gateways=2, agents=2, binary=otelcol_binary, env=TIER_ENV,
        gateway_env=gateway_env(prometheus.remote_write_url), gateway_configs=[overlay],
    )
    tiers.append(tier)
    run = f"control-{time.time_ns()}"
    run_metrics_plan(tmp_path, run, [a.endpoints.otlp_grpc for a in tier.agents], traces)
    time.sleep(6.0)  # several flushes of both gateways

    expected = {f"tier-{s}": float(n * traces) for s, n in (("api", 2), ("bot", 2), ("exchange", 1))}
    sums = {dict(k)["service_name"]: v for k, v in prometheus.query(
        'sum by (service_name) (gateway_span_metrics_calls_total{service_name=~"tier-.*"})').items()}
    resets = sum(prometheus.query('resets(gateway_span_metrics_calls_total{service_name=~"tier-.*"}[10m])').values())
    refused = prometheus.own_metric("prometheus_tsdb_out_of_order_samples_total")
    print(f"control: sums={sums} expected={expected} resets={resets:g} out_of_order={refused:g}")
    # The same series from two writers: partial counts, values jumping between the two, or
    # samples Prometheus refuses as out of order.
    assert sums != expected or resets > 0 or refused > 0
    # Meanwhile the agents' series in the same run are exact.
    wait_for(
        lambda: {dict(k)["service_name"]: v for k, v in prometheus.query(
            'sum by (service_name) (traces_span_metrics_calls_total{service_name=~"tier-.*"})').items()} == expected,
        30, "the agents' exact span metrics",
    )


def test_every_variable_of_the_tier_configs_is_documented() -> None:
    import re

    readme = (COLLECTOR_DIR / "README.md").read_text()
    used: set[str] = set()
    for name in ("agent.yaml", "agent-dns.yaml", "gateway.yaml"):
        for line in (COLLECTOR_DIR / name).read_text().splitlines():
            if not line.lstrip().startswith("#"):
                used |= set(re.findall(r"\$\{env:([A-Z0-9_]+)", line))
    assert len(used) > 20
    assert not sorted(v for v in used if f"`{v}`" not in readme)
