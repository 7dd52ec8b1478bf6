"""Running otel-trader's collector distribution (``otelcol-trader``) from Python.

The one place that knows how: where the binary is (and how to build it in a source checkout),
which configuration it runs, which environment variables move its listeners (the
``${env:OTELCOL_*}`` of ``collector/otelcol-config.yaml``, see ``collector/README.md``), how to
tell it is ready (the ``health_check`` extension answers 200), and how to stop it (SIGTERM, then
SIGKILL after a bounded wait). ``otel-trader collector run``, the end-to-end tests and the demo
all go through here.

    from otel_trader.collector import CollectorProcess, CollectorPorts

    with CollectorProcess(ports=CollectorPorts.free(), storage_dir=tmp / "queue") as col:
        print(col.endpoints.otlp_grpc)        # 127.0.0.1:PORT, for OTLP_ENDPOINT

:class:`SinkProcess` runs ``collector/sink-config.yaml``, the stand-in for SigNoz's ingest that
writes every OTLP request it receives as one JSON line (source checkouts only; for tests and the
demo).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import IO

__all__ = [
    "COLLECTOR_DIR",
    "ROLES",
    "CollectorError",
    "CollectorPorts",
    "CollectorProcess",
    "Endpoints",
    "SinkProcess",
    "Tier",
    "build_collector",
    "collector_env",
    "default_storage_dir",
    "describe_endpoints",
    "describe_routing",
    "find_binary",
    "find_config",
    "free_ports",
    "gateways_env",
    "role_configs",
    "start_tier",
]

#: ``collector/`` of a source checkout (the package sits next to it); absent in an installed wheel.
COLLECTOR_DIR = Path(__file__).resolve().parents[1] / "collector"
BINARY_NAME = "otelcol-trader"

#: Prefixes of the variables our configs read. A "clean" environment drops them, so a
#: developer's shell cannot move a test's or the demo's collector onto other ports or storage.
OWN_ENV_PREFIXES = ("OTELCOL_", "SINK_")


class CollectorError(RuntimeError):
    """The collector could not be found, built, started or reached."""


# -- finding and building ----------------------------------------------------------------------


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


# -- ports, endpoints, environment -------------------------------------------------------------


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """``n`` distinct free TCP ports on ``host`` (all held open until all are chosen)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass(frozen=True)
class CollectorPorts:
    """The listeners of ``otelcol-config.yaml``; the defaults are the collector's usual ports."""

    otlp_grpc: int = 4317
    otlp_http: int = 4318
    health: int = 13133
    prometheus: int = 8889
    telemetry: int = 8888
    pprof: int = 1777
    zpages: int = 55679

    #: field → the config's environment variable.
    ENV = {
        "otlp_grpc": "OTELCOL_OTLP_GRPC_PORT",
        "otlp_http": "OTELCOL_OTLP_HTTP_PORT",
        "health": "OTELCOL_HEALTH_PORT",
        "prometheus": "OTELCOL_PROMETHEUS_PORT",
        "telemetry": "OTELCOL_TELEMETRY_PORT",
        "pprof": "OTELCOL_PPROF_PORT",
        "zpages": "OTELCOL_ZPAGES_PORT",
    }

    @classmethod
    def free(cls, host: str = "127.0.0.1") -> CollectorPorts:
        """Distinct free ports for every listener, so several collectors can run side by side."""
        names = [f.name for f in fields(cls)]
        return cls(**dict(zip(names, free_ports(len(names), host), strict=True)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: int | None) -> CollectorPorts:
        """Defaults, replaced by the ``OTELCOL_*_PORT`` variables set, replaced by non-None ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, int] = {}
        for name, var in cls.ENV.items():
            raw = environ.get(var, "").strip()
            if raw:
                try:
                    values[name] = int(raw)
                except ValueError as exc:
                    raise CollectorError(f"{var}={raw!r} is not a port number") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def env(self) -> dict[str, str]:
        """The ``OTELCOL_*_PORT`` variables that put the collector on these ports."""
        return {var: str(getattr(self, name)) for name, var in self.ENV.items()}


@dataclass(frozen=True)
class Endpoints:
    """Where a running collector listens, as clients address it."""

    otlp_grpc: str
    otlp_http: str
    prometheus: str
    telemetry: str
    health: str
    zpages: str
    pprof: str

    @classmethod
    def for_ports(cls, ports: CollectorPorts, bind_host: str = "127.0.0.1") -> Endpoints:
        """Endpoints of a collector bound to ``bind_host`` (a wildcard address is reached via loopback)."""
        host = _client_host(bind_host)
        debug = "127.0.0.1"  # pprof/zpages stay on loopback (OTELCOL_DEBUG_BIND_HOST)
        return cls(
            otlp_grpc=f"{host}:{ports.otlp_grpc}",
            otlp_http=f"http://{host}:{ports.otlp_http}",
            prometheus=f"http://{host}:{ports.prometheus}/metrics",
            telemetry=f"http://{host}:{ports.telemetry}/metrics",
            health=f"http://{host}:{ports.health}/",
            zpages=f"http://{debug}:{ports.zpages}/debug/tracez",
            pprof=f"http://{debug}:{ports.pprof}/debug/pprof/",
        )

    def describe(self, role: str = "single") -> list[tuple[str, str]]:
        """(label, address) rows for printing; agents and gateways serve no Prometheus endpoint."""
        rows = [
            ("OTLP gRPC", f"{self.otlp_grpc}   (OTLP_ENDPOINT={self.otlp_grpc})"),
            ("OTLP HTTP", self.otlp_http),
            ("Prometheus (app + span metrics)", self.prometheus),
            ("self-metrics (otelcol_*)", self.telemetry),
            ("health", self.health),
            ("zpages", self.zpages),
        ]
        if role == "gateway":
            rows[0] = ("OTLP gRPC", f"{self.otlp_grpc}   (for the agents)")
        return rows if role == "single" else [r for r in rows if not r[0].startswith("Prometheus")]


def _client_host(bind_host: str) -> str:
    if bind_host in ("", "0.0.0.0", "::", "[::]"):
        return "127.0.0.1"
    return f"[{bind_host}]" if ":" in bind_host and not bind_host.startswith("[") else bind_host


def collector_env(
    ports: CollectorPorts,
    *,
    bind_host: str = "127.0.0.1",
    storage_dir: Path | None = None,
    signoz_endpoint: str | None = None,
    extra: Mapping[str, str] | None = None,
    clean: bool = True,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for ``otelcol-config.yaml`` on ``ports``.

    ``base`` (default ``os.environ``) is the starting point; ``clean`` drops its ``OTELCOL_*`` and
    ``SINK_*`` variables first. ``SIGNOZ_*`` always pass through unless ``signoz_endpoint`` is
    given, and ``extra`` wins over everything.
    """
    env = dict(os.environ if base is None else base)
    if clean:
        env = {k: v for k, v in env.items() if not k.startswith(OWN_ENV_PREFIXES)}
    env.update(ports.env())
    env["OTELCOL_BIND_HOST"] = bind_host
    env.setdefault("OTELCOL_DEBUG_BIND_HOST", "127.0.0.1")
    if storage_dir is not None:
        env["OTELCOL_STORAGE_DIR"] = str(storage_dir)
    elif not env.get("OTELCOL_STORAGE_DIR"):
        env["OTELCOL_STORAGE_DIR"] = str(default_storage_dir())
    if signoz_endpoint is not None:
        env["SIGNOZ_ENDPOINT"] = signoz_endpoint
        env.setdefault("SIGNOZ_INSECURE", "true")
    env.update(extra or {})
    return env


def gateways_env(gateways: Iterable[str]) -> dict[str, str]:
    """``OTELCOL_GATEWAYS`` for the agent's static resolver: ``host:port`` entries as a YAML list.

    The whole variable is one ``${env:...}`` value in ``agent.yaml``, which the collector parses
    as YAML, so the list reaches the resolver as a list. Raises :class:`CollectorError` for an
    empty list or an entry that is not ``host:port``.
    """
    entries = [g.strip() for g in gateways]
    if not entries:
        raise CollectorError("an agent needs at least one gateway (host:port)")
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or any(c in entry for c in ",[]{} \t"):
            raise CollectorError(f"gateway {entry!r} is not host:port")
    return {"OTELCOL_GATEWAYS": "[" + ", ".join(entries) + "]"}


# -- processes ---------------------------------------------------------------------------------


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are returned, connection errors raise OSError."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own URLs
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", "replace")


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGTERM the child when this process dies.

    Even if the Python parent is SIGKILLed (a test runner killed by a timeout), the collector
    it started does not linger holding ports.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except Exception:  # pragma: no cover - best effort; stop() still stops it normally
            return
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


class _ManagedProcess:
    """A collector binary with one config set, ready when its health URL answers 200."""

    name = "otelcol"

    def __init__(
        self,
        binary: Path,
        configs: Iterable[Path],
        env: Mapping[str, str],
        health_url: str,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.binary = Path(binary)
        self.configs = [Path(c) for c in configs]
        self.env = dict(env)
        self.health_url = health_url
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The argv this process is started with."""
        argv = [str(self.binary)]
        for config in self.configs:
            argv += ["--config", str(config)]
        return argv

    @property
    def running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while started (also after it exited, until :meth:`stop`)."""
        return self.process.pid if self.process is not None else None

    def start(self, timeout: float = 30.0) -> _ManagedProcess:
        """Start the binary and wait (at most ``timeout`` s) until it is healthy."""
        if self.running:
            raise CollectorError(f"{self.name} is already running (pid {self.pid})")
        log: IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps its own descriptor
            log.write(f"\n===== start #{self.starts + 1}: {' '.join(self.command())}\n".encode())
            log.flush()
        try:
            self.process = subprocess.Popen(
                self.command(),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT if log is not None else None,
                cwd=self.cwd,
                # Own session: a terminal's Ctrl-C reaches only us, and we stop it in order.
                start_new_session=True,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - only calls prctl
            )
        except OSError as exc:
            raise CollectorError(f"cannot start {self.binary}: {exc}") from exc
        finally:
            if log is not None:
                log.close()
        self.starts += 1
        try:
            self.wait_healthy(timeout)
        except BaseException:
            self.stop(timeout=5)  # never leave a half-started process behind
            raise
        return self

    def healthy(self) -> bool:
        """One health probe: the health_check extension answers 200."""
        try:
            status, _ = http_get(self.health_url, timeout=1.0)
        except OSError:
            return False
        return status == 200

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Poll the health URL until 200; fail at once if the process exits, or after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise CollectorError(f"{self.name} exited with code {code} while starting{self._tail()}")
            if self.healthy():
                return
            if time.monotonic() >= deadline:
                raise CollectorError(
                    f"{self.name} not healthy at {self.health_url} after {timeout:.0f}s{self._tail()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (graceful: receivers close, queues drain or persist), SIGKILL after ``timeout`` s.

        Returns the exit code (``None`` if it was never started). Always reaps the process.
        """
        return self._signal_and_reap(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """SIGKILL, as a crash would: no shutdown, nothing flushed."""
        return self._signal_and_reap(signal.SIGKILL, 5.0)

    def restart(self, timeout: float = 30.0) -> _ManagedProcess:
        """Stop (gracefully) and start again with the same ports, storage and environment."""
        self.stop()
        return self.start(timeout)

    def _signal_and_reap(self, sig: int, timeout: float) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(10)
        self.process = None
        return process.returncode

    def __enter__(self) -> _ManagedProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- diagnostics -------------------------------------------------------------------------

    def log(self) -> str:
        """Everything the process wrote (when started with a ``log_path``)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def _tail(self, lines: int = 40) -> str:
        text = self.log()
        if not text:
            return ""
        return f"; last log lines ({self.log_path}):\n" + "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pid={self.pid} running={self.running} health={self.health_url}>"


class CollectorProcess(_ManagedProcess):
    """``otelcol-trader`` running ``collector/otelcol-config.yaml`` (plus ``extra_configs``).

    ``binary``/``config`` default to :func:`find_binary` (which builds in a source checkout when
    missing) and :func:`find_config`; ``ports`` to the standard ones. ``env`` entries are
    applied last (e.g. ``OTELCOL_BATCH_TIMEOUT``); see :func:`collector_env` for the rest.
    """

    name = "otelcol-trader"

    def __init__(
        self,
        binary: Path | None = None,
        config: Path | None = None,
        ports: CollectorPorts | None = None,
        *,
        bind_host: str = "127.0.0.1",
        storage_dir: Path | None = None,
        signoz_endpoint: str | None = None,
        env: Mapping[str, str] | None = None,
        extra_configs: Iterable[Path] = (),
        clean_env: bool = True,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.ports = ports or CollectorPorts()
        self.bind_host = bind_host
        self.endpoints = Endpoints.for_ports(self.ports, bind_host)
        full_env = collector_env(
            self.ports,
            bind_host=bind_host,
            storage_dir=storage_dir,
            signoz_endpoint=signoz_endpoint,
            extra=env,
            clean=clean_env,
        )
        self.storage_dir = Path(full_env["OTELCOL_STORAGE_DIR"])
        super().__init__(
            binary or find_binary(),
            [config or find_config(), *extra_configs],
            full_env,
            self.endpoints.health,
            log_path,
            cwd,
        )

    def start(self, timeout: float = 30.0) -> CollectorProcess:
        """Start and wait until healthy; see :meth:`_ManagedProcess.start`."""
        # file_storage creates its own directory, but not missing parents of it.
        self.storage_dir.parent.mkdir(parents=True, exist_ok=True)
        super().start(timeout)
        return self

    def __enter__(self) -> CollectorProcess:
        if not self.running:
            self.start()
        return self

    def self_metric(self, sample_name: str, **labels: str) -> float:
        """Sum of the collector's own metric samples ``sample_name`` (``otelcol_*``) matching ``labels``."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = http_get(self.endpoints.telemetry, timeout=5.0)
        if status != 200:
            raise CollectorError(f"{self.endpoints.telemetry}: HTTP {status}")
        total = 0.0
        for family in text_string_to_metric_families(body):
            for sample in family.samples:
                if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


class SinkProcess(_ManagedProcess):
    """``collector/sink-config.yaml``: OTLP in, one OTLP/JSON line per request into ``file``.

    The stand-in for SigNoz's ingest (SigNoz receives through its own OTel collector, so what
    this receives is what SigNoz would see). Only in a source checkout; for tests and the demo.
    """

    name = "otelcol-sink"

    def __init__(
        self,
        file: Path,
        binary: Path | None = None,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        health_port: int | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        config = COLLECTOR_DIR / "sink-config.yaml"
        if not config.is_file():
            raise CollectorError(f"{config} not found: the sink exists only in a source checkout")
        chosen = free_ports(3)
        self.grpc_port = grpc_port or chosen[0]
        self.http_port = http_port or chosen[1]
        self.health_port = health_port or chosen[2]
        self.file = Path(file)
        env = {k: v for k, v in os.environ.items() if not k.startswith(OWN_ENV_PREFIXES)}
        env.update(
            SINK_BIND_HOST="127.0.0.1",
            SINK_OTLP_GRPC_PORT=str(self.grpc_port),
            SINK_OTLP_HTTP_PORT=str(self.http_port),
            SINK_HEALTH_PORT=str(self.health_port),
            SINK_FILE=str(self.file),
        )
        super().__init__(
            binary or find_binary(),
            [config],
            env,
            f"http://127.0.0.1:{self.health_port}/",
            log_path,
            cwd,
        )

    @property
    def otlp_grpc_endpoint(self) -> str:
        """``127.0.0.1:PORT``: what ``SIGNOZ_ENDPOINT`` of a main collector points at."""
        return f"127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 30.0) -> SinkProcess:
        """Start and wait until healthy."""
        super().start(timeout)
        return self

    def __enter__(self) -> SinkProcess:
        if not self.running:
            self.start()
        return self


def describe_endpoints(endpoints: Endpoints, role: str = "single") -> str:
    """A printable block of a collector's endpoints."""
    rows = endpoints.describe(role)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"  {label:<{width}}  {value}" for label, value in rows)


# -- the two-tier deployment -------------------------------------------------------------------

#: The ``${env:VAR:-default}`` defaults of agent.yaml / gateway.yaml that :func:`describe_routing`
#: prints when a variable is unset (tests/collector/test_tier.py checks they match the files).
ROUTING_DEFAULTS = {
    "OTELCOL_GATEWAYS": "[otelcol-gateway:4317]",
    "OTELCOL_GATEWAY_DNS": "otelcol-gateway",
    "OTELCOL_GATEWAY_PORT": "4317",
    "OTELCOL_GATEWAY_DNS_INTERVAL": "5s",
    "OTELCOL_TAIL_DECISION_WAIT": "10s",
    "OTELCOL_TAIL_LATENCY_MS": "1000",
    "OTELCOL_TAIL_SAMPLE_PERCENT": "10",
    "OTELCOL_PROMETHEUS_REMOTE_WRITE_ENDPOINT": "http://prometheus:9090/api/v1/write",
    "SIGNOZ_ENDPOINT": "signoz-otel-collector:4317",
}


def describe_routing(role: str, env: Mapping[str, str], *, dns: bool = False) -> str:
    """Who routes what to whom, for a collector of ``role`` started with ``env`` (printable block)."""

    def get(name: str) -> str:
        return env.get(name) or ROUTING_DEFAULTS[name]

    if role == "agent":
        if dns:
            gateways = (
                f"the addresses of {get('OTELCOL_GATEWAY_DNS')}, port {get('OTELCOL_GATEWAY_PORT')} "
                f"(DNS, resolved every {get('OTELCOL_GATEWAY_DNS_INTERVAL')})"
            )
        else:
            gateways = f"{get('OTELCOL_GATEWAYS').strip('[]')} (static list)"
        return "\n".join(
            [
                f"  routes to gateways  {gateways}",
                "  traces              by trace id: every span of a trace, from any agent, to the same gateway",
                "  metrics             by service.name: every series of a service written by one gateway",
                "  logs                by trace id (logs without one: any gateway)",
                "  span metrics        traces_span_metrics_* computed here, from every span, before sampling",
                "  queue               one persistent queue per signal in front of the gateways "
                f"({env.get('OTELCOL_STORAGE_DIR') or 'OTELCOL_STORAGE_DIR'})",
            ]
        )
    if role == "gateway":
        return "\n".join(
            [
                "  receives from       the agents (OTLP), whole traces and whole services",
                f"  tail sampling       after {get('OTELCOL_TAIL_DECISION_WAIT')}: keeps errors, traces slower than "
                f"{get('OTELCOL_TAIL_LATENCY_MS')} ms, rejected/failed orders, "
                f"{get('OTELCOL_TAIL_SAMPLE_PERCENT')} % of the rest",
                f"  exports to SigNoz   {get('SIGNOZ_ENDPOINT')} (traces, metrics, logs; persistent queue)",
                f"  metrics to Prom.    {get('OTELCOL_PROMETHEUS_REMOTE_WRITE_ENDPOINT')} (remote write)",
            ]
        )
    if role == "single":
        return f"  exports to SigNoz   {get('SIGNOZ_ENDPOINT')}; Prometheus pulls app + span metrics from this collector"
    raise CollectorError(f"unknown collector role {role!r}: expected one of {', '.join(ROLES)}")


@dataclass
class Tier:
    """Agents and gateways started together by :func:`start_tier`; :meth:`stop` stops them all."""

    gateways: list[CollectorProcess]
    agents: list[CollectorProcess]

    @property
    def agent(self) -> CollectorProcess:
        """The first agent (where a single app sends)."""
        return self.agents[0]

    def gateway_endpoints(self) -> list[str]:
        """``host:port`` of every gateway's OTLP/gRPC receiver, as the agents route to them."""
        return [g.endpoints.otlp_grpc for g in self.gateways]

    def stop(self, timeout: float = 10.0) -> None:
        """Agents first (they flush into the gateways), then the gateways."""
        for process in [*self.agents, *self.gateways]:
            process.stop(timeout)

    def __enter__(self) -> Tier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_tier(
    signoz_endpoint: str | Sequence[str],
    workdir: Path,
    *,
    gateways: int = 2,
    agents: int = 1,
    binary: Path | None = None,
    env: Mapping[str, str] | None = None,
    gateway_env: Mapping[str, str] | None = None,
    agent_env: Mapping[str, str] | None = None,
    gateway_configs: Iterable[Path] = (),
    agent_configs: Iterable[Path] = (),
    bind_host: str = "127.0.0.1",
    timeout: float = 30.0,
) -> Tier:
    """Start ``gateways`` gateways exporting to ``signoz_endpoint``, then ``agents`` agents routing to them.

    ``signoz_endpoint`` may be a list with one endpoint per gateway (tests give each gateway its
    own SigNoz stand-in to see what each one exported). Every process gets free ports, its own
    storage directory and log under ``workdir``; ``env`` applies to all of them, ``gateway_env`` /
    ``agent_env`` on top for one role, and ``gateway_configs`` / ``agent_configs`` are merged over
    the role's files. On any failure whatever was started is stopped again.
    """
    binary = binary or find_binary()
    targets = [signoz_endpoint] * gateways if isinstance(signoz_endpoint, str) else list(signoz_endpoint)
    if len(targets) != gateways:
        raise CollectorError(f"{len(targets)} SigNoz endpoints for {gateways} gateways")
    gateway_files, agent_files = list(gateway_configs), list(agent_configs)
    started: list[CollectorProcess] = []
    tier = Tier(gateways=[], agents=[])
    try:
        for i in range(1, gateways + 1):
            gateway = CollectorProcess(
                binary,
                role_configs("gateway")[0],
                CollectorPorts.free(),
                extra_configs=gateway_files,
                bind_host=bind_host,
                storage_dir=workdir / f"gateway-{i}-queue",
                signoz_endpoint=targets[i - 1],
                env={**(env or {}), **(gateway_env or {})},
                log_path=workdir / f"gateway-{i}.log",
            )
            started.append(gateway.start(timeout))
            tier.gateways.append(gateway)
        routes = gateways_env(tier.gateway_endpoints())
        for i in range(1, agents + 1):
            configs = role_configs("agent")
            agent = CollectorProcess(
                binary,
                configs[0],
                CollectorPorts.free(),
                bind_host=bind_host,
                storage_dir=workdir / f"agent-{i}-queue",
                env={"OTELCOL_AGENT_ID": f"agent-{i}", **routes, **(env or {}), **(agent_env or {})},
                extra_configs=[*configs[1:], *agent_files],
                log_path=workdir / f"agent-{i}.log",
            )
            started.append(agent.start(timeout))
            tier.agents.append(agent)
    except BaseException:
        for process in reversed(started):
            process.stop(5.0)
        raise
    return tier
