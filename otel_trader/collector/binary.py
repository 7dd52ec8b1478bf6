"""Where the ``otelcol-trader`` binary and its configurations are, and how to build it in a source checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

#: ``collector/`` of a source checkout (the package sits next to it); absent in an installed wheel.
COLLECTOR_DIR = Path(__file__).resolve().parents[2] / "collector"
BINARY_NAME = "otelcol-trader"


class CollectorError(RuntimeError):
    """The collector could not be found, built, started or reached."""


def build_script() -> Path | None:
    """``collector/build.sh`` when running from a source checkout, else ``None``."""
    script = COLLECTOR_DIR / "build.sh"
    return script if script.is_file() else None


def build_collector(timeout: float = 1800.0, quiet: bool = False) -> Path:
    """Run ``collector/build.sh`` (instant when the binary is up to date); return the binary.

    A first build with empty Go caches takes minutes (collector/README.md), hence the long
    default ``timeout``; a build that overruns it is killed and reported, never waited on forever.
    """
    script = build_script()
    if script is None:
        raise CollectorError(
            f"cannot build {BINARY_NAME}: {COLLECTOR_DIR / 'build.sh'} not found (not a source checkout); "
            "set OTELCOL_BINARY or put otelcol-trader on PATH"
        )
    try:
        result = subprocess.run(
            ["bash", str(script)],
            cwd=script.parent.parent,
            capture_output=quiet,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CollectorError(f"{script} did not finish within {timeout:.0f}s") from exc
    binary = COLLECTOR_DIR / "bin" / BINARY_NAME
    if result.returncode != 0 or not _executable(binary):
        detail = f"\n{(result.stdout or '')[-2000:]}{(result.stderr or '')[-3000:]}" if quiet else ""
        raise CollectorError(f"{script} failed with exit code {result.returncode}{detail}")
    return binary


def find_binary(build: bool = True, build_timeout: float = 1800.0, quiet_build: bool = False) -> Path:
    """The ``otelcol-trader`` binary to run.

    Looked up in order: ``$OTELCOL_BINARY`` (must exist when set), ``collector/bin/otelcol-trader``
    of a source checkout, ``otelcol-trader`` on ``PATH``. When none exists and ``build`` is true,
    a source checkout builds it with ``collector/build.sh``. Raises :class:`CollectorError`
    when there is no binary.
    """
    explicit = os.environ.get("OTELCOL_BINARY")
    if explicit:
        if not _executable(Path(explicit)):
            raise CollectorError(f"OTELCOL_BINARY={explicit!r} is not an executable file")
        return Path(explicit)
    local = COLLECTOR_DIR / "bin" / BINARY_NAME
    if _executable(local):
        return local
    on_path = shutil.which(BINARY_NAME)
    if on_path:
        return Path(on_path)
    if build and build_script() is not None:
        return build_collector(build_timeout, quiet=quiet_build)
    raise CollectorError(
        f"{BINARY_NAME} not found ({local} missing, not on PATH, OTELCOL_BINARY unset); "
        "build it with `make collector` (collector/build.sh)"
    )


def find_config() -> Path:
    """``$OTELCOL_CONFIG`` or ``collector/otelcol-config.yaml``; raises :class:`CollectorError` if missing."""
    config = Path(os.environ.get("OTELCOL_CONFIG") or COLLECTOR_DIR / "otelcol-config.yaml")
    if not config.is_file():
        raise CollectorError(f"collector config {config} not found (set OTELCOL_CONFIG)")
    return config


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


#: What a collector does in a deployment (collector/README.md, "Two tiers"): ``single`` is the one
#: collector of ``otelcol-config.yaml``; ``agent`` runs next to the apps and routes to the
#: gateways (``otelcol-config.yaml`` + ``agent.yaml``); ``gateway`` tail-samples and exports
#: (``gateway.yaml``).
ROLES = ("single", "agent", "gateway")


def role_configs(role: str, *, dns: bool = False, base: Path | None = None) -> list[Path]:
    """The ``--config`` files of ``role``, in merge order.

    ``base`` replaces ``otelcol-config.yaml`` (the ``single`` config and the agent's base, e.g.
    ``$OTELCOL_CONFIG``); ``dns`` adds ``agent-dns.yaml`` (gateways from a DNS name instead of the
    static ``OTELCOL_GATEWAYS`` list). Raises :class:`CollectorError` for an unknown role or a
    missing file.
    """
    if role not in ROLES:
        raise CollectorError(f"unknown collector role {role!r}: expected one of {', '.join(ROLES)}")
    main = base or COLLECTOR_DIR / "otelcol-config.yaml"
    if role == "single":
        files = [main]
    elif role == "agent":
        files = [main, COLLECTOR_DIR / "agent.yaml"] + ([COLLECTOR_DIR / "agent-dns.yaml"] if dns else [])
    else:
        files = [COLLECTOR_DIR / "gateway.yaml"]
    for file in files:
        if not file.is_file():
            raise CollectorError(f"collector config {file} not found (the {role} role needs it)")
    return files


def default_storage_dir() -> Path:
    """Where the persistent sending queue lives when nobody says: a per-user state directory.

    The config's own default, ``/var/lib/otelcol/file_storage``, is for containers and is not
    writable by a normal user, and the collector does not start without its storage.
    """
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "otel-trader" / "collector-queue"
