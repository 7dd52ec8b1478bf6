"""The manifest, the configs and the built binary agree with each other."""

from __future__ import annotations

import os
import re
import subprocess

from pathlib import Path

import pytest
import yaml

# Paths computed here rather than imported from conftest, so the module works whether or
# not tests/ becomes a package.
COLLECTOR_DIR = Path(__file__).resolve().parents[2] / "collector"
MAIN_CONFIG = COLLECTOR_DIR / "otelcol-config.yaml"
SINK_CONFIG = COLLECTOR_DIR / "sink-config.yaml"

pytestmark = pytest.mark.timeout(120)

TAIL_SAMPLING_OVERLAY = COLLECTOR_DIR / "tail-sampling.yaml"


def _validate(binary, configs, env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTELCOL_", "SIGNOZ_", "SINK_"))}
    env.update(env_extra)
    cmd = [str(binary), "validate"]
    for c in configs:
        cmd += ["--config", str(c)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)


def test_validate_main_config_with_defaults(otelcol_binary, tmp_path):
    # No variables set at all: every ${env:VAR:-default} must have a usable default.
    r = _validate(otelcol_binary, [MAIN_CONFIG], {}, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_main_config_for_signoz_cloud(otelcol_binary, tmp_path):
    r = _validate(otelcol_binary, [MAIN_CONFIG], {
        "SIGNOZ_ENDPOINT": "ingest.eu.signoz.cloud:443", "SIGNOZ_INSECURE": "false",
        "SIGNOZ_INGESTION_KEY": "test-key", "OTELCOL_STORAGE_DIR": str(tmp_path / "q"),
    }, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_sink_config(otelcol_binary, tmp_path):
    r = _validate(otelcol_binary, [SINK_CONFIG], {"SINK_FILE": str(tmp_path / "sink.jsonl")}, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_tail_sampling_overlay(otelcol_binary, tmp_path):
    r = _validate(otelcol_binary, [MAIN_CONFIG, TAIL_SAMPLING_OVERLAY], {"OTELCOL_STORAGE_DIR": str(tmp_path / "q")}, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_rejects_a_broken_config(otelcol_binary, tmp_path):
    # Guards the tests above: validate must actually fail on a wrong setting.
    bad = tmp_path / "bad.yaml"
    bad.write_text(MAIN_CONFIG.read_text().replace("translation_strategy: UnderscoreEscapingWithSuffixes",
                                                   "translation_strategy: NoSuchStrategy"))
    r = _validate(otelcol_binary, [bad], {"OTELCOL_STORAGE_DIR": str(tmp_path / "q")}, tmp_path)
    assert r.returncode != 0
    assert "NoSuchStrategy" in r.stdout + r.stderr


def _manifest_components():
    manifest = yaml.safe_load((COLLECTOR_DIR / "builder-config.yaml").read_text())
    mods = {}
    for kind in ("receivers", "processors", "connectors", "exporters", "extensions", "providers"):
        for entry in manifest.get(kind, []):
            path, version = entry["gomod"].split()
            mods[path] = version
    return manifest, mods


def test_manifest_is_pinned_to_one_release():
    manifest, mods = _manifest_components()
    assert manifest["dist"]["name"] == "otelcol-trader"
    versions = {(("providers" if "/confmap/provider/" in p else "components"), v) for p, v in mods.items()}
    assert versions == {("components", "v0.145.0"), ("providers", "v1.51.0")}, versions
    assert 'OCB_VERSION="${OCB_VERSION:-v0.145.0}"' in (COLLECTOR_DIR / "build.sh").read_text()


def test_binary_contains_every_manifest_component(otelcol_binary):
    out = subprocess.run([str(otelcol_binary), "components"], capture_output=True, text=True, timeout=30, check=True).stdout
    listed = yaml.safe_load(out)
    _, mods = _manifest_components()
    modules_in_binary = set()
    for kind in ("receivers", "processors", "connectors", "exporters", "extensions", "providers"):
        for c in listed.get(kind) or []:
            modules_in_binary.add(c["module"].split()[0])
    missing = set(mods) - modules_in_binary
    assert not missing, f"in the manifest but not in the binary: {missing}"
    names = {kind: {c["name"] for c in listed.get(kind) or []} for kind in ("receivers", "processors", "connectors", "exporters", "extensions")}
    assert names["receivers"] == {"otlp"}
    assert names["processors"] == {"memory_limiter", "batch", "resource", "attributes", "transform", "tail_sampling"}
    assert names["connectors"] == {"spanmetrics"}
    assert {"otlp_grpc", "otlp_http", "debug", "file", "prometheus"} <= names["exporters"]
    assert names["extensions"] == {"health_check", "pprof", "zpages", "file_storage"}
    assert re.search(r"0\.145\.0", subprocess.run([str(otelcol_binary), "--version"], capture_output=True, text=True, check=True).stdout)


def test_compose_pins_the_same_release_and_mounts_the_config():
    compose = yaml.safe_load((COLLECTOR_DIR / "docker-compose.yaml").read_text())
    services = compose["services"]
    images = [s["image"] for s in services.values() if "opentelemetry-collector-contrib" in s.get("image", "")]
    assert images == ["otel/opentelemetry-collector-contrib:0.145.0"], images
    svc = next(s for s in services.values() if s.get("image") == images[0])
    mounts = " ".join(v if isinstance(v, str) else v.get("source", "") for v in svc.get("volumes", []))
    assert "otelcol-config.yaml" in mounts
    assert any("otelcol-config.yaml" in str(a) for a in svc.get("command", [])), svc.get("command")


def test_every_env_var_of_the_config_is_documented():
    readme = (COLLECTOR_DIR / "README.md").read_text()
    used = set()
    for cfg in (MAIN_CONFIG, TAIL_SAMPLING_OVERLAY, SINK_CONFIG):
        for line in cfg.read_text().splitlines():
            if not line.lstrip().startswith("#"):  # comments show the syntax with a placeholder name
                used |= set(re.findall(r"\$\{env:([A-Z0-9_]+)", line))
    assert used, "config uses no variables?"
    undocumented = sorted(v for v in used if f"`{v}`" not in readme)
    assert not undocumented, undocumented
