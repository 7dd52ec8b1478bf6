"""deploy/: Helm values for the upstream opentelemetry-collector chart, and the tier's alert rules.

There is no Kubernetes cluster (and no helm) here, so the values are checked structurally:
against the chart's own values.schema.json (vendored from chart 0.145.0), for the shape the
two tiers need (DaemonSet agents with hostPort, gateway Deployment behind a headless Service,
HPA on CPU and queue depth), for agreement with each other (the agents' DNS name is the
gateways' Service), and by running ``otelcol-trader validate`` on the exact collector config
each values file carries, with the environment its pods get. The alert rules go through
``promtool check rules`` and ``promtool test rules``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / "deploy" / "helm"
PROM = ROOT / "deploy" / "prometheus"
SCHEMA = HELM / "opentelemetry-collector-0.145.0.values.schema.json"


def values(name: str) -> dict[str, Any]:
    return yaml.safe_load((HELM / name).read_text())


def env_of(v: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in v["extraEnvs"]}


def test_values_files_are_generated_from_the_collector_configs() -> None:
    r = subprocess.run([sys.executable, str(HELM / "render_values.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("name", ["values-agent.yaml", "values-gateway.yaml"])
def test_values_match_the_charts_schema(name: str) -> None:
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator(schema).validate(values(name))
    # The schema is strict where it matters: an unknown key is refused (guards the check above).
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate({**values(name), "replicas": 3})


def test_agents_are_a_daemonset_the_gateways_a_headless_autoscaled_deployment() -> None:
    agent, gateway = values("values-agent.yaml"), values("values-gateway.yaml")
    assert agent["mode"] == "daemonset" and gateway["mode"] == "deployment"
    # Same collector release as our ocb manifest, on the upstream contrib image.
    manifest = (ROOT / "collector" / "builder-config.yaml").read_text()
    assert re.search(r"^\s+version:\s*0\.145\.0-trader\s*$", manifest, re.M)
    for v in (agent, gateway):
        assert v["image"] == {"repository": "otel/opentelemetry-collector-contrib", "tag": "0.145.0",
                              "pullPolicy": "IfNotPresent"}
        assert v["command"] == {"name": "otelcol-contrib"}
        # The chart's default jaeger/zipkin listeners are off: our configs have no such receiver.
        assert all(not v["ports"][p]["enabled"] for p in ("jaeger-compact", "jaeger-thrift", "jaeger-grpc", "zipkin"))
        assert v["ports"]["metrics"]["enabled"] and v["ports"]["metrics"]["containerPort"] == 8888
    # Apps reach the agent on their node.
    assert agent["ports"]["otlp"]["hostPort"] == 4317 and agent["service"]["internalTrafficPolicy"] == "Local"
    # One A record per gateway pod: the Service must be headless.
    assert gateway["service"]["clusterIP"] == "None"
    assert gateway["replicaCount"] >= 2
    hpa = gateway["autoscaling"]
    assert hpa["enabled"] and hpa["minReplicas"] >= 2 and hpa["maxReplicas"] > hpa["minReplicas"]
    assert hpa["targetCPUUtilizationPercentage"] > 0
    (queue,) = hpa["additionalMetrics"]
    assert queue["type"] == "Pods" and queue["pods"]["metric"]["name"] == "otelcol_exporter_queue_size"
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300  # ring changes are costly
    assert gateway["podDisruptionBudget"] == {"enabled": True, "maxUnavailable": 1}


def test_the_agents_find_the_gateways_service_and_keep_their_queue_on_the_node() -> None:
    agent, gateway = values("values-agent.yaml"), values("values-gateway.yaml")
    env = env_of(agent)
    assert env["OTELCOL_GATEWAY_DNS"] == f"{gateway['fullnameOverride']}.observability.svc.cluster.local"
    assert int(env["OTELCOL_GATEWAY_PORT"]) == gateway["ports"]["otlp"]["containerPort"]
    exporters = agent["alternateConfig"]["exporters"]
    for name in ("loadbalancing/traces", "loadbalancing/metrics", "loadbalancing/logs"):
        assert set(exporters[name]["resolver"]) == {"dns"}, exporters[name]["resolver"]
    # The storage directory the config reads is the mounted volume (hostPath for the agent).
    for v, kind in ((agent, "hostPath"), (gateway, "emptyDir")):
        storage = env_of(v)["OTELCOL_STORAGE_DIR"]
        (mount,) = [m for m in v["extraVolumeMounts"] if m["mountPath"] == storage]
        (volume,) = [vol for vol in v["extraVolumes"] if vol["name"] == mount["name"]]
        assert kind in volume
    # memory_limiter below the container limit, so the limiter acts before the OOM killer.
    for v in (agent, gateway):
        limit_mib = int(v["resources"]["limits"]["memory"].removesuffix("Mi").removesuffix("Gi")) * (
            1024 if v["resources"]["limits"]["memory"].endswith("Gi") else 1
        )
        assert int(env_of(v)["OTELCOL_MEMORY_LIMIT_MIB"]) <= 0.85 * limit_mib


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["values-agent.yaml", "values-gateway.yaml"])
def test_the_config_in_the_values_validates_with_the_pods_environment(
    otelcol_binary: Path, tmp_path: Path, name: str
) -> None:
    v = values(name)
    config = v["alternateConfig"]
    # The chart runs the config through `tpl`: nothing in it may look like a template.
    assert "{{" not in yaml.safe_dump(config)
    # Every port the config listens on is a port of the pod, and the probes hit health_check.
    text = json.dumps(config)
    assert "${env:OTELCOL_HEALTH_PORT:-13133}" in text and "${env:OTELCOL_OTLP_GRPC_PORT:-4317}" in text
    env = {k: ("node-1" if isinstance(val, dict) else val) for k, val in env_of(v).items()}
    env.update(MY_POD_IP="127.0.0.1", OTELCOL_STORAGE_DIR=str(tmp_path / "queue"))
    file = tmp_path / "relay.yaml"
    file.write_text(yaml.safe_dump(config))
    clean = {k: val for k, val in os.environ.items() if not k.startswith(("OTELCOL_", "SIGNOZ_", "SINK_"))}
    r = subprocess.run([str(otelcol_binary), "validate", f"--config={file}"], env={**clean, **env},
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.timeout(60)
def test_tier_alert_rules_check_and_pass_their_unit_tests() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed: run `make system-deps`")
    check = subprocess.run([promtool, "check", "rules", str(PROM / "tier-alerts.yml")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([promtool, "test", "rules", "tier-alerts_test.yml"], cwd=PROM, capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr
    # Every metric the rules use is one our collectors really expose (names checked against
    # the running binaries in test_tier.py / the upstream component docs).
    used = set(re.findall(r"\b(otelcol_[a-z_]+)", (PROM / "tier-alerts.yml").read_text()))
    assert used == {
        "otelcol_loadbalancer_num_backends",
        "otelcol_loadbalancer_backend_outcome_total",
        "otelcol_processor_tail_sampling_sampling_trace_dropped_too_early_total",
    }, used
