# Long because snapshot sharing between workers and their merge are one protocol (file layout,
# who serves, recycled workers' counts kept); split, each half would need the other's internals.
"""``/metrics`` over several workers: every worker shares snapshots, the one scraped serves the merge.

Under ``uvicorn --workers N``, ``gunicorn -w N`` or ``hypercorn -w N`` every scrape reaches one
worker, and each worker only knows its own counts: counters jump up and down between scrapes.
Here each worker of one server writes a snapshot of what it would serve (every family of the
registry ``/metrics`` serves) to a directory the workers of that server share, once a second
from a daemon thread, at every scrape it answers and at the end of its lifespan (and at exit).
The worker answering a scrape serves the merge of every snapshot there, its own taken fresh:

* counters, histograms and summaries are summed per label set over every worker that ever ran
  in this server: a worker that exited (gunicorn ``--max-requests``, a crash, a reload) leaves
  its last snapshot, so totals never go down;
* OpenTelemetry up-down counters (levels: queue sizes, open connections, positions) are summed
  over the live workers: the level of a process that is gone is no longer there;
* gauges, ``target_info`` and the per-process runtime metrics (``process_*``, ``python_gc_*``,
  ``python_info``) are served once per live worker, with a ``worker`` label (its pid); those of
  exited workers are dropped.

Contract for monotonic totals: a worker writes its snapshot before it serves a scrape, so a
file never holds less than what its worker has served, and snapshots only move forward (one
lock covers collect and write). Exited workers' snapshots are folded into ``retired.json``
under an exclusive ``flock``; readers hold the shared lock, so a scrape never sees a worker
both folded and gone, or neither.

The directory: ``TELEMETRY_MULTIPROCESS_DIR`` if set, else ``$TMPDIR/otel-trader-metrics-<uid>``,
with one subdirectory per server named after the supervisor's pid and start time and the
listening socket's inode (``<pid>-<start>-<inode>``): the workers of one server share that
socket with their supervisor, and two servers (or one restarted) never share a socket.
Subdirectories of supervisors that are gone are removed by the next worker that starts.

A process that does not serve a listening socket shared with its parent (a single-process
``uvicorn app:app``, tests) shares nothing, starts no thread and serves ``/metrics`` exactly
as before; so does every process with ``TELEMETRY_MULTIPROCESS_DIR=off``. The request path is
never touched. Detection reads ``/proc`` (Linux); elsewhere set the directory explicitly.

Nothing here may break the application: every failure is one warning and the scrape is served
with what could be read.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import re
import shutil
import socket
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otel_trader.sdk.manager import TelemetryManager

__all__ = [
    "Aggregator",
    "ServedRegistry",
    "ServerKey",
    "WORKER_LABEL",
    "current",
    "detect_server",
    "install",
    "merge_families",
]

logger = logging.getLogger("otel_trader")

#: Seconds between the snapshots a worker writes on its own (it also writes at every scrape).
INTERVAL_SECONDS = 1.0
#: Label that tells the workers' series of per-worker families apart; its value is the pid.
WORKER_LABEL = "worker"
_FORMAT = 1
_RUNTIME_SCOPE = "otel_trader.runtime"
_RUNTIME_PREFIXES = ("process_", "python_gc_", "python_info")
_SUMMED_TYPES = frozenset({"counter", "histogram", "summary"})
_SNAPSHOT_RE = re.compile(r"^w-(\d+)-(\d+)\.json$")
_SERVER_DIR_RE = re.compile(r"^(\d+)-(\d+)-(\d+)$")
_RETIRED = "retired.json"
_LOCK = ".lock"

_warned: set[str] = set()


def _warn_once(what: str, message: str, *args: Any) -> None:
    if what not in _warned:
        _warned.add(what)
        logger.warning("otel-trader: " + message, *args)


# -- which server this process is a worker of ---------------------------------------------------


@dataclass(frozen=True)
class ServerKey:
    """The server a worker belongs to: its supervisor (pid, start time) and the shared listening socket."""

    supervisor_pid: int
    supervisor_start: int
    socket_inode: int
    #: The TCP port of that socket (None for a Unix socket); for people reading the directory.
    port: int | None
    #: Whether the supervisor was seen holding the socket (False: its descriptors are unreadable).
    shared: bool

    @property
    def name(self) -> str:
        return f"{self.supervisor_pid}-{self.supervisor_start}-{self.socket_inode}"


def start_time(pid: int) -> int | None:
    """Start time of process ``pid`` (clock ticks after boot), None if it does not run (or is a zombie)."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = data.rsplit(b")", 1)[-1].split()
    # fields[0] is the state (field 3 of proc(5)), fields[19] the start time (field 22).
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


_HAS_PROC = os.path.exists("/proc/self/stat")


def _alive(pid: int, started: int) -> bool:
    if _HAS_PROC:
        return start_time(pid) == started
    try:  # no /proc: the pid only (a reused pid reads as alive)
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _server_socket(fd: int) -> tuple[bool, int | None]:
    """Whether descriptor ``fd`` is a server's socket (listening, or bound and unconnected), and its TCP port.

    Bound-and-unconnected counts too: uvicorn's supervisor only binds, each worker calls
    ``listen()`` when it starts serving, so the first worker's lifespan sees no listening socket.
    """
    dup = os.dup(fd)
    sock = socket.socket(fileno=dup)
    try:
        if sock.type != socket.SOCK_STREAM:
            return False, None
        address = sock.getsockname()
        port = address[1] if sock.family in (socket.AF_INET, socket.AF_INET6) else None
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            return True, port
        if not (port or (sock.family == socket.AF_UNIX and address)):
            return False, None  # unbound, or an unnamed socketpair end
        try:
            sock.getpeername()
        except OSError:
            return True, port  # bound, no peer: not listening yet
        return False, None
    finally:
        sock.close()


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for entry in os.scandir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError, ValueError):
            target = os.readlink(entry.path)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def detect_server() -> ServerKey | None:
    """The server this process serves requests for, when its supervisor shares the listening socket.

    uvicorn ``--workers``, gunicorn and hypercorn open the listening socket in the supervisor
    and hand it to every worker: a worker holds a listening socket its parent holds too. A
    single-process server opened its socket itself, its parent (a shell, systemd) does not hold
    it: None. When the parent's descriptors cannot be read (workers running as another user
    than their supervisor), a listening socket counts as shared: sharing then costs a snapshot
    a second, and is right either way. None without ``/proc`` or without a listening socket.
    """
    ppid = os.getppid()
    supervisor_start = start_time(ppid) if ppid > 0 else None
    if supervisor_start is None:
        return None
    parent: set[int] | None
    try:
        parent = _socket_inodes(ppid)
    except PermissionError:
        parent = None
    except OSError:
        return None
    candidates: list[tuple[int, int | None]] = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            info = os.fstat(fd)
            if not stat.S_ISSOCK(info.st_mode) or (parent is not None and info.st_ino not in parent):
                continue
            listening, port = _server_socket(fd)
        except (OSError, ValueError):
            continue  # closed meanwhile, or not a socket Python can wrap
        if listening:
            candidates.append((info.st_ino, port))
    if not candidates:
        return None
    inode, port = min(candidates, key=lambda c: c[0])
    return ServerKey(ppid, supervisor_start, inode, port, shared=parent is not None)


def _private_base() -> Path:
    """``$TMPDIR/otel-trader-metrics-<uid>``: created 0700, refused if another user owns it."""
    base = Path(tempfile.gettempdir()) / f"otel-trader-metrics-{os.geteuid()}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    info = os.lstat(base)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise PermissionError(f"{base} is not a private directory of this user")
    return base


def _remove_stale_servers(base: Path) -> None:
    """Remove the subdirectories of servers whose supervisor no longer runs."""
    for entry in os.scandir(base):
        match = _SERVER_DIR_RE.match(entry.name)
        if match and entry.is_dir(follow_symlinks=False):
            pid, started = int(match.group(1)), int(match.group(2))
            if start_time(pid) != started:
                shutil.rmtree(entry.path, ignore_errors=True)


def _server_directory(setting: str | None, key: ServerKey | None) -> Path | None:
    """Where this process shares its snapshots, or None when it shares none."""
    if setting == "off":
        return None
    if setting is None:
        if key is None:
            return None
        base = _private_base()
    else:
        base = Path(setting)
        base.mkdir(parents=True, exist_ok=True)
        if key is None:
            return base  # not detectable: the directory is this server's, as the user said
    with contextlib.suppress(OSError):
        _remove_stale_servers(base)
    directory = base / key.name
    directory.mkdir(exist_ok=True)
    return directory


# -- snapshots and their merge ----------------------------------------------------------------

#: A family as a snapshot holds it: name ``n``, type ``t``, help ``h``, unit ``u``, policy ``p``
#: (``sum``: over every worker that ran; ``live``: over live workers; ``worker``: one series per
#: live worker), the distinct label-name lists ``k``, and samples ``s``, each
#: ``[sample name, index into k, label values, value]`` (label names once per family, not per sample).
Family = dict[str, Any]


def _encode(metric: Any, updown: set[str]) -> Family:
    key_index: dict[tuple[str, ...], int] = {}
    samples = []
    for sample in metric.samples:
        labels = sample.labels
        names = tuple(labels)
        index = key_index.setdefault(names, len(key_index))
        samples.append([sample.name, index, list(labels.values()), float(sample.value)])
    first = metric.samples[0].labels if metric.samples else {}
    runtime = metric.name.startswith(_RUNTIME_PREFIXES) or first.get("otel_scope_name") == _RUNTIME_SCOPE
    if runtime or not (metric.type in _SUMMED_TYPES or metric.name in updown):
        policy = "worker"
    else:
        policy = "sum" if metric.type in _SUMMED_TYPES else "live"
    return {
        "n": metric.name,
        "t": metric.type,
        "h": metric.documentation,
        "u": metric.unit,
        "p": policy,
        "k": [list(names) for names in key_index],
        "s": samples,
    }


def _worker_names(names: Iterable[str]) -> tuple[str, ...]:
    # The application's own label of that name is kept, renamed as Prometheus renames clashes.
    return (*("exported_" + n if n == WORKER_LABEL else n for n in names), WORKER_LABEL)


def merge_families(entries: Iterable[tuple[str | None, bool, list[Family]]]) -> list[Family]:
    """Merge snapshots: ``(worker label, alive, families)`` each, the answering worker's first.

    ``sum`` families add up per (sample name, labels) over every entry (``_created`` keeps the
    earliest), ``live`` ones over live entries; ``worker`` families keep the samples of live
    entries, labelled with their worker.
    A family is described (type, help, unit) by its first entry; one of another type is left out.
    Samples keep the order of their first appearance: the exporters write each series' samples
    together, and workers running the same code have the same series layouts.
    """
    merged: dict[str, Family] = {}
    series: dict[str, dict[tuple[Any, ...], list[Any]]] = {}
    key_index: dict[str, dict[tuple[str, ...], int]] = {}
    for worker, alive, families in entries:
        for family in families:
            policy = family["p"]
            if policy != "sum" and (not alive or worker is None):
                continue
            summed = policy != "worker"
            name = family["n"]
            head = merged.get(name)
            if head is None:
                head = merged[name] = {k: family[k] for k in ("n", "t", "h", "u", "p")}
                head["k"], head["s"] = [], []
                series[name], key_index[name] = {}, {}
            elif head["t"] != family["t"] or head["p"] != family["p"]:
                continue
            known, indexes = series[name], key_index[name]
            local = []
            for names in family["k"]:
                out_names = tuple(names) if summed else _worker_names(names)
                index = indexes.get(out_names)
                if index is None:
                    index = indexes[out_names] = len(head["k"])
                    head["k"].append(list(out_names))
                local.append(index)
            for sample_name, index, values, value in family["s"]:
                out_index = local[index]
                out_values = values if summed else [*values, worker]
                key = (sample_name, out_index, *out_values)
                sample = known.get(key)
                if sample is None:
                    sample = known[key] = [sample_name, out_index, out_values, value]
                    head["s"].append(sample)
                elif summed:
                    total = sample[3]
                    sample[3] = min(total, value) if sample_name.endswith("_created") else total + value
    return list(merged.values())


def _to_metric(family: Family) -> Any:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.samples import Sample

    metric = Metric(family["n"], family["h"], family["t"], family["u"])
    names = family["k"]
    metric.samples = [
        Sample(name, dict(zip(names[index], values, strict=True)), value)
        for name, index, values, value in family["s"]
    ]
    return metric


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        _warn_once(f"corrupt:{path.name}", "left out the unreadable metrics snapshot %s", path)
        return None
    if not isinstance(data, dict) or data.get("v") != _FORMAT:
        return None  # another otel-trader version's format: left out, not misread
    return data


@contextlib.contextmanager
def _locked(directory: Path, exclusive: bool) -> Iterator[None]:
    import fcntl

    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # releases the lock


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(json.dumps(data, separators=(",", ":")).encode())
    os.replace(tmp, path)


# -- the worker's side ------------------------------------------------------------------------


class Aggregator:
    """One worker's share: writes its snapshots into ``directory`` and serves the merge of all of them."""

    def __init__(self, manager: TelemetryManager, directory: Path) -> None:
        self.manager = manager
        self.directory = directory
        self.pid = os.getpid()
        self.started = start_time(self.pid) or 0
        self.path = directory / f"w-{self.pid}-{self.started}.json"
        self.worker = str(self.pid)
        #: Family names of OpenTelemetry up-down counters (exported as gauges, summed here).
        self.updown: set[str] = set()
        #: Seconds the last snapshot took to collect and write (measured, for the README).
        self.last_write_seconds = 0.0
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._track_updown(getattr(manager, "_prometheus_reader", None))

    # The OpenTelemetry exporter turns an up-down counter into a gauge family; which families
    # were up-down counters is only known from the metric data it receives.
    def _track_updown(self, reader: Any) -> None:
        if reader is None:
            return
        original = reader._receive_metrics

        def receive(metrics_data: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                self._note_updown(reader, metrics_data)
            except Exception:  # never break a collection over a name
                logger.debug("could not read the kinds of the metrics", exc_info=True)
            return original(metrics_data, *args, **kwargs)

        reader._receive_metrics = receive

    def _note_updown(self, reader: Any, metrics_data: Any) -> None:
        from opentelemetry.sdk.metrics.export import Sum

        if metrics_data is None:
            return
        resolve = getattr(reader._collector, "_resolve_metric_name", lambda name: name)
        try:
            from opentelemetry.exporter.prometheus._mapping import map_unit
        except ImportError:  # pragma: no cover - another exporter layout

            def map_unit(unit: str) -> str:
                return unit

        for resource in metrics_data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if isinstance(metric.data, Sum) and not metric.data.is_monotonic:
                        name = resolve(metric.name)
                        unit = map_unit(metric.unit or "")
                        self.updown.add(name)
                        if unit and not name.endswith("_" + unit):
                            self.updown.add(f"{name}_{unit}")

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        """Write a first snapshot now and then every INTERVAL_SECONDS from a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="otel-trader-metrics-share", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._shut_down():
            self.tick()
            if self._stop.wait(INTERVAL_SECONDS):
                return

    def tick(self) -> None:
        """One snapshot of this worker, and the folding of exited workers' ones."""
        try:
            self.write()
            self._retire_exited()
        except Exception as exc:
            _warn_once("tick", "sharing metrics with the other workers failed in %s: %s", self.directory, exc)

    def finish(self) -> None:
        """The last snapshot (end of the lifespan, exit); the thread stops. ``start()`` resumes."""
        self._stop.set()
        if os.getpid() == self.pid:
            self.tick()

    def _shut_down(self) -> bool:
        return bool(getattr(self.manager, "_shut_down", False))

    def _collect(self) -> list[Family]:
        registry = self.manager.prometheus_registry
        return [_encode(metric, self.updown) for metric in registry.collect()]

    def write(self) -> list[Family] | None:
        """Collect this worker's families and write them; returns them (None after shutdown).

        One lock over both: a collection older than the file must never replace it.
        """
        if self._shut_down() or os.getpid() != self.pid:
            return None  # a shut-down provider collects nothing: the last file stays
        with self._write_lock:
            begin = time.perf_counter()
            families = self._collect()
            data = {
                "v": _FORMAT,
                "pid": self.pid,
                "start": self.started,
                "time": time.time(),
                "families": families,
            }
            try:
                try:
                    _write_atomic(self.path, data)
                except FileNotFoundError:  # the directory was removed under us (a tmp cleaner)
                    self.directory.mkdir(parents=True, exist_ok=True)
                    _write_atomic(self.path, data)
            except OSError as exc:  # a full disk: the others see this worker's last snapshot
                _warn_once(
                    "write", "could not write this worker's metrics snapshot to %s: %s", self.path, exc
                )
            self.last_write_seconds = time.perf_counter() - begin
        return families

    def _others(self) -> list[tuple[str | None, bool, list[Family]]]:
        entries: list[tuple[str | None, bool, list[Family]]] = []
        with _locked(self.directory, exclusive=False):
            for name in sorted(os.listdir(self.directory)):
                match = _SNAPSHOT_RE.match(name)
                if name == _RETIRED:
                    data = _read_json(self.directory / name)
                    if data is not None:
                        entries.append((None, False, data["families"]))
                elif match and name != self.path.name:
                    data = _read_json(self.directory / name)
                    if data is not None:
                        alive = _alive(int(match.group(1)), int(match.group(2)))
                        entries.append((match.group(1), alive, data["families"]))
        return entries

    def _retire_exited(self) -> None:
        """Fold the snapshots of exited workers into ``retired.json`` (their summed families only)."""
        exited = [
            name
            for name in os.listdir(self.directory)
            if (m := _SNAPSHOT_RE.match(name)) and not _alive(int(m.group(1)), int(m.group(2)))
        ]
        if not exited:
            return
        with _locked(self.directory, exclusive=True):
            retired = _read_json(self.directory / _RETIRED)
            entries: list[tuple[str | None, bool, list[Family]]] = [
                (None, False, retired["families"] if retired else [])
            ]
            for name in exited:
                data = _read_json(self.directory / name)
                if data is not None:  # None: folded by another worker meanwhile, or unreadable
                    entries.append((None, False, data["families"]))
            if len(entries) > 1:
                _write_atomic(self.directory / _RETIRED, {"v": _FORMAT, "families": merge_families(entries)})
            for name in exited:  # also what a worker killed while writing left behind
                for path in (self.directory / name, self.directory / f".tmp-{name}"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)

    def served(self) -> list[Any]:
        """The families a scrape of this worker serves: its own (fresh) merged with every snapshot."""
        own = self.write()
        if own is None:
            own = [_encode(metric, self.updown) for metric in self.manager.prometheus_registry.collect()]
        try:
            others = self._others()
        except Exception as exc:
            _warn_once("read", "could not read the other workers' metrics in %s: %s", self.directory, exc)
            others = []
        metrics = []
        for family in merge_families([(self.worker, True, own), *others]):
            try:
                metrics.append(_to_metric(family))
            except Exception as exc:  # a family another version wrote and this one rejects
                _warn_once(
                    f"family:{family.get('n')}", "left out metric %r of a worker: %s", family.get("n"), exc
                )
        return metrics


# -- this process's aggregator ----------------------------------------------------------------

_aggregator: Aggregator | None = None
#: (pid, manager) the decision was taken for: a forked child or a new manager decides again.
_decided: tuple[int, Any] | None = None
_state_lock = threading.Lock()
_atexit_registered = False


def _decided_here(manager: Any = None) -> bool:
    return _decided is not None and _decided[0] == os.getpid() and (manager is None or _decided[1] is manager)


def current() -> Aggregator | None:
    """The running aggregator of this process, if it shares its metrics."""
    return _aggregator if _decided_here() else None


def ensure_started(manager: TelemetryManager) -> Aggregator | None:
    """Decide once per process (and manager) whether it shares its metrics; start sharing if so."""
    global _aggregator, _decided
    if not _decided_here(manager):
        with _state_lock:
            if not _decided_here(manager):
                _aggregator = _decide(manager)
                _decided = (os.getpid(), manager)
    aggregator = _aggregator
    if aggregator is not None and not aggregator._shut_down():
        aggregator.start()
    return aggregator


def _decide(manager: TelemetryManager) -> Aggregator | None:
    setting = manager.config.multiprocess_dir
    try:
        key = None if setting == "off" else detect_server()
        directory = _server_directory(setting, key)
        if directory is None or manager.prometheus_registry is None:
            return None
        aggregator = Aggregator(manager, directory)
    except Exception as exc:
        _warn_once(
            "start",
            "cannot share metrics between workers (%s); each worker's /metrics shows only its own "
            "counts. Set TELEMETRY_MULTIPROCESS_DIR to a writable directory",
            exc,
        )
        return None
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(_finish_at_exit)
        _atexit_registered = True
    logger.debug("otel-trader: sharing metrics with the other workers in %s", directory)
    return aggregator


def finish() -> None:
    """Write this worker's last snapshot (lifespan end); sharing resumes if the app starts again."""
    aggregator = current()
    if aggregator is not None:
        aggregator.finish()


def _finish_at_exit() -> None:
    aggregator = current()
    if aggregator is not None and not aggregator._stop.is_set():
        aggregator.finish()


def _forget_after_fork() -> None:
    # A process forked from a worker is not that worker: it decides for itself.
    global _aggregator, _decided
    _aggregator = None
    _decided = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class _Restricted:
    def __init__(self, served: ServedRegistry, names: Iterable[str]) -> None:
        self._served = served
        self._names = set(names)

    def collect(self) -> Iterator[Any]:
        for metric in self._served.collect():
            kept = [s for s in metric.samples if s.name in self._names]
            if kept:
                metric.samples = kept
                yield metric


class ServedRegistry:
    """What ``/metrics`` serves: the registry itself, or the workers' merge when this process shares.

    The first scrape also decides (once) whether to share, for an app whose lifespan does not run.
    """

    def __init__(self, manager: TelemetryManager) -> None:
        self._manager = manager

    def collect(self) -> Iterator[Any]:
        aggregator = current() if _decided_here(self._manager) else ensure_started(self._manager)
        if aggregator is not None:
            try:
                metrics = aggregator.served()
            except Exception as exc:
                _warn_once(
                    "serve", "serving the workers' merged metrics failed, serving this worker's: %s", exc
                )
            else:
                yield from metrics
                return
        yield from self._manager.prometheus_registry.collect()

    def restricted_registry(self, names: Iterable[str]) -> Any:
        """``/metrics?name[]=…``: the same, restricted to samples of those names."""
        if not _decided_here(self._manager):
            ensure_started(self._manager)
        if current() is None:
            return self._manager.prometheus_registry.restricted_registry(names)
        return _Restricted(self, names)


def install(app: Any, manager: TelemetryManager) -> ServedRegistry:
    """Share from the start of ``app``'s lifespan, write the last snapshot at its end; the view to serve."""
    router: Any = getattr(app, "router", None)
    original = getattr(router, "lifespan_context", None)
    if original is not None:

        @contextlib.asynccontextmanager
        async def lifespan(lifespan_app: Any) -> AsyncIterator[Any]:
            ensure_started(manager)
            async with original(lifespan_app) as state:
                yield state
            try:
                finish()
            except Exception as exc:  # pragma: no cover - finish() already warns
                _warn_once("finish", "could not write the last metrics snapshot: %s", exc)

        router.lifespan_context = lifespan
    return ServedRegistry(manager)
