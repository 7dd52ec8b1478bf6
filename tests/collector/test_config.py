"""The manifest, the configs and the built binary agree with each other."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

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
    r = _validate(
        otelcol_binary,
        [MAIN_CONFIG],
        {
            "SIGNOZ_ENDPOINT": "ingest.eu.signoz.cloud:443",
            "SIGNOZ_INSECURE": "false",
            "SIGNOZ_INGESTION_KEY": "test-key",
            "OTELCOL_STORAGE_DIR": str(tmp_path / "q"),
        },
        tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_sink_config(otelcol_binary, tmp_path):
    r = _validate(otelcol_binary, [SINK_CONFIG], {"SINK_FILE": str(tmp_path / "sink.jsonl")}, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_tail_sampling_overlay(otelcol_binary, tmp_path):
    r = _validate(
        otelcol_binary,
        [MAIN_CONFIG, TAIL_SAMPLING_OVERLAY],
        {"OTELCOL_STORAGE_DIR": str(tmp_path / "q")},
        tmp_path,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_validate_rejects_a_broken_config(otelcol_binary, tmp_path):
    # Guards the tests above: validate must actually fail on a wrong setting.
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        MAIN_CONFIG.read_text().replace(
            "translation_strategy: UnderscoreEscapingWithSuffixes", "translation_strategy: NoSuchStrategy"
        )
    )
    r = _validate(otelcol_binary, [bad], {"OTELCOL_STORAGE_DIR": str(tmp_path / "q")}, tmp_path)
    assert r.returncode != 0
    assert "NoSuchStrategy" in r.stdout + r.stderr


# The YAML read below (manifest, `components` output, compose file) is regular enough for
# regexes, which keeps these tests free of a YAML library the project does not depend on.
KINDS = ("receivers", "processors", "connectors", "exporters", "extensions", "providers")


def _sections(text: str) -> dict[str, str]:
    """Top-level ``key:`` sections of a YAML document -> their indented bodies."""
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+):\s*$", line) or re.match(r"^([a-z_]+):\s", line)
        if m and not line.startswith((" ", "\t")):
            current = m.group(1)
            out[current] = ""
        elif current is not None:
            out[current] += line + "\n"
    return out


def _manifest_components():
    text = (COLLECTOR_DIR / "builder-config.yaml").read_text()
    secs = _sections(text)
    mods = {}
    for kind in KINDS:
        for path, version in re.findall(r"^\s*- gomod:\s*(\S+)\s+(\S+)\s*$", secs.get(kind, ""), re.M):
            mods[path] = version
    return secs, mods


def test_manifest_is_pinned_to_one_release():
    secs, mods = _manifest_components()
    assert re.search(r"^\s+name:\s*otelcol-trader\s*$", secs["dist"], re.M)
    assert len(mods) == 22, sorted(mods)  # 19 components + 3 confmap providers
    versions = {(("providers" if "/confmap/provider/" in p else "components"), v) for p, v in mods.items()}
    assert versions == {("components", "v0.145.0"), ("providers", "v1.51.0")}, versions
    assert 'OCB_VERSION="${OCB_VERSION:-v0.145.0}"' in (COLLECTOR_DIR / "build.sh").read_text()


def test_binary_contains_every_manifest_component(otelcol_binary):
    out = subprocess.run(
        [str(otelcol_binary), "components"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    secs = _sections(out)
    names = {kind: set(re.findall(r"^\s*- name:\s*(\S+)", secs.get(kind, ""), re.M)) for kind in KINDS}
    modules_in_binary = {
        m for kind in KINDS for m in re.findall(r"^\s*module:\s*(\S+)", secs.get(kind, ""), re.M)
    }
    _, mods = _manifest_components()
    missing = set(mods) - modules_in_binary
    assert not missing, f"in the manifest but not in the binary: {missing}"
    assert names["receivers"] == {"otlp"}
    assert names["processors"] == {
        "memory_limiter",
        "batch",
        "resource",
        "attributes",
        "transform",
        "tail_sampling",
    }
    assert names["connectors"] == {"spanmetrics"}
    assert {
        "otlp_grpc", "otlp_http", "debug", "file", "prometheus", "loadbalancing", "prometheusremotewrite"
    } <= names["exporters"]
    assert names["extensions"] == {"health_check", "pprof", "zpages", "file_storage"}
    version = subprocess.run(
        [str(otelcol_binary), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert "0.145.0" in version


def test_compose_pins_the_same_release_and_mounts_the_config():
    text = (COLLECTOR_DIR / "docker-compose.yaml").read_text()
    images = re.findall(r"^\s+image:\s*(\S+)\s*$", text, re.M)
    assert images == ["otel/opentelemetry-collector-contrib:0.145.0"], images
    assert re.search(
        r"^\s+- \./otelcol-config\.yaml:/etc/otelcol-trader/otelcol-config\.yaml:ro\s*$", text, re.M
    )
    assert re.search(r"^\s+- --config=/etc/otelcol-trader/otelcol-config\.yaml\s*$", text, re.M)


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
