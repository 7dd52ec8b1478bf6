"""``/metrics`` of a server with several workers: the totals of all of them, at every scrape.

Real servers on 127.0.0.1 (uvicorn ``--workers``, gunicorn with uvicorn workers, with and
without ``--preload`` and with worker recycling, hypercorn), every request and scrape on a new
connection so the kernel hands them to any worker. The snapshot directory is the automatic one,
under the test's own ``TMPDIR``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "monitoring"))
from procs import AppProcess, Launcher, clean_env, executable, free_port  # noqa: E402

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="worker detection reads /proc")

PROMTOOL = "/usr/bin/promtool"
#: How long a worker may take to share what it counted (it writes a snapshot every second).
SETTLE_SECONDS = 2.0


@dataclass(frozen=True)
class Shape:
    """One way production runs the app: the command line and how many workers it keeps."""

    name: str
    workers: int
    command: Callable[[int], list[str]]
    recycles: bool = False


def _gunicorn(*extra: str) -> Callable[[int], list[str]]:
    def command(port: int) -> list[str]:
        return [
            executable("gunicorn"),
            "-w",
            "3",
            "-k",
            "uvicorn.workers.UvicornWorker",
            "-b",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "5",
            *extra,
            "workers_app:app",
        ]

    return command


SHAPES = [
    Shape(
        "uvicorn --workers 4",
        4,
        lambda port: [
            executable("uvicorn"),
            "workers_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "4",
        ],
    ),
    Shape("gunicorn -w 3", 3, _gunicorn()),
    Shape("gunicorn -w 3 --preload", 3, _gunicorn("--preload")),
    Shape(
        "gunicorn -w 3 --max-requests 50",
        3,
        _gunicorn("--max-requests", "50", "--max-requests-jitter", "10"),
        recycles=True,
    ),
    Shape(
        "hypercorn -w 3",
        3,
        lambda port: [executable("hypercorn"), "-w", "3", "-b", f"127.0.0.1:{port}", "workers_app:app"],
    ),
]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    return clean_env(
        TELEMETRY_ENABLED="true",
        TELEMETRY_EXPORTER="none",
        TELEMETRY_ENV_FILE="none",
        SERVICE_NAME="workers",
        TMPDIR=str(temp),
        **extra,
    )


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    yield launcher
    for app in launcher.started:
        app.stop(timeout=10)
    launcher.stop_all()


def start(launch: Launcher, shape: Shape, env: dict[str, str]) -> AppProcess:
    """Start ``shape``, wait until every one of its workers answers."""
    port = free_port()
    app = launch.start(shape.command(port), {**env, "APP_PORT": str(port)}, port)
    app.wait_ready()
    seen: set[int] = set()
    deadline = time.monotonic() + 30
    while len(seen) < shape.workers and time.monotonic() < deadline:
        try:  # /health is not counted in http_requests_total
            seen.add(httpx.get(f"{app.url}/health/pid", timeout=5).json()["pid"])
        except httpx.TransportError:
            time.sleep(0.05)
    assert len(seen) >= shape.workers, f"only workers {seen} answered:\n{app.stderr()[-3000:]}"
    time.sleep(SETTLE_SECONDS)  # every worker has written its first snapshot
    return app


def load(url: str, requests: int, threads: int = 8) -> int:
    """Send ``requests`` GETs over new connections from ``threads`` threads; the number answered 200.

    A connection a recycled worker closes before reading the request is retried: the request was
    never served, so never counted.
    """
    answered = [0] * threads

    def run(index: int) -> None:
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as client:
            for i in range(index, requests, threads):
                for _attempt in range(20):
                    try:
                        response = client.get(f"{url}/work/{i % 5}")
                    except httpx.TransportError:
                        time.sleep(0.05)
                        continue
                    answered[index] += response.status_code == 200
                    break

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    return sum(answered)


def scrape(url: str) -> str:
    for _attempt in range(20):
        try:
            response = httpx.get(f"{url}/metrics", timeout=10)  # a new connection: any worker
        except httpx.TransportError:  # a recycled worker closed it
            time.sleep(0.05)
            continue
        assert response.status_code == 200, response.text[:500]
        return response.text
    raise AssertionError("no scrape answered in 20 attempts")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def total(text: str, name: str = "http_requests_total") -> float:
    """The sum over every label set of ``name``."""
    return sum(value for _, value in samples(text, name))


def promtool(text: str) -> None:
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()


def settled(url: str, expected: float) -> str:
    """The first scrape (within SETTLE_SECONDS) reading ``expected`` requests, else the last one."""
    deadline = time.monotonic() + SETTLE_SECONDS
    text = scrape(url)
    while total(text) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
        text = scrape(url)
    return text


def per_worker(text: str, name: str) -> list[str]:
    """The ``worker`` label of every sample of ``name``."""
    return [labels.get("worker", "") for labels, _ in samples(text, name)]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_every_scrape_reads_the_total_of_all_workers(launch: Launcher, tmp_path: Path, shape: Shape) -> None:
    app = start(launch, shape, _env(tmp_path))
    sent = load(app.url, 400)
    assert sent == 400

    settled(app.url, sent)
    texts = [scrape(app.url) for _ in range(12)]
    readings = [total(text) for text in texts]
    assert readings == [sent] * 12, f"{shape.name}: scrapes read {readings}"
    for text in texts:
        promtool(text)
        # Summed over every worker that ran: the app's counter, the histogram's count.
        assert total(text, "worker_jobs_total") == sent
        assert total(text, "http_request_duration_seconds_count") == sent
        # Summed over the live workers, without a worker label: the up-down counter.
        open_jobs = samples(text, "worker_open_jobs")
        assert len(open_jobs) <= 1 and all("worker" not in labels for labels, _ in open_jobs), open_jobs
        if shape.recycles:  # what exited workers had opened is open nowhere (absent if none live did)
            assert 0 <= total(text, "worker_open_jobs") < sent
        else:
            assert total(text, "worker_open_jobs") == sent
        # Per-process metrics: once per live worker, told apart by the worker label.
        for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "target_info"):
            workers = per_worker(text, name)
            assert "" not in workers and len(set(workers)) == len(workers), (name, workers)
            if shape.recycles:  # a worker may be exiting while its replacement starts
                assert 1 <= len(workers) <= shape.workers + 1, (name, workers)
            else:
                assert len(workers) == shape.workers, (name, workers)
        gauges = samples(text, "worker_last_pid")
        assert all(float(labels["worker"]) == value for labels, value in gauges), gauges

    # While more load runs, no scrape reads less than the one before.
    more = 300
    answered: list[int] = []
    background = threading.Thread(target=lambda: answered.append(load(app.url, more, threads=4)))
    background.start()
    during = []
    deadline = time.monotonic() + 90
    while background.is_alive() and time.monotonic() < deadline:
        during.append(total(scrape(app.url)))
    background.join(30)
    assert answered == [more]
    assert len(during) >= 3, during
    assert all(a <= b for a, b in zip(during, during[1:], strict=False)), f"{shape.name}: {during}"
    final = settled(app.url, sent + more)
    assert total(final) == sent + more, f"{shape.name}: {total(final)} after {sent + more} requests"


@pytest.mark.timeout(120)
def test_a_killed_worker_leaves_its_counts(launch: Launcher, tmp_path: Path) -> None:
    """SIGKILL: no final snapshot, but the one of the last second stays in the totals."""
    shape = SHAPES[0]
    env = _env(tmp_path)
    base = Path(env["TMPDIR"]) / f"otel-trader-metrics-{os.geteuid()}"
    base.mkdir(mode=0o700)
    stale = base / "1-999999999-1"  # a server whose supervisor is gone: removed at start
    stale.mkdir()
    app = start(launch, shape, env)
    assert not stale.exists()
    (server,) = base.iterdir()
    assert server.name.startswith(f"{app.process.pid}-"), server.name
    sent = load(app.url, 400)
    settled(app.url, sent)
    time.sleep(SETTLE_SECONDS)
    victim = int(httpx.get(f"{app.url}/health/pid", timeout=5).json()["pid"])
    os.kill(victim, signal.SIGKILL)
    # uvicorn's supervisor replaces it; scrapes meanwhile reach the survivors.
    readings = [total(scrape(app.url)) for _ in range(12)]
    assert readings == [sent] * 12, readings
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = scrape(app.url)
        if str(victim) not in per_worker(text, "target_info"):
            break
        time.sleep(0.2)
    assert str(victim) not in per_worker(text, "target_info"), "an exited worker's gauges are still served"
    assert total(text) == sent
    # Its snapshot was folded into the retired workers' totals.
    deadline = time.monotonic() + 5
    while any(p.name.startswith(f"w-{victim}-") for p in server.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.2)
    names = sorted(p.name for p in server.iterdir())
    assert "retired.json" in names and not any(n.startswith(f"w-{victim}-") for n in names), names
    assert total(scrape(app.url)) == sent


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[3]], ids=[SHAPES[0].name, SHAPES[3].name])
def test_prometheus_computes_the_increase_of_all_workers(
    launch: Launcher, tmp_path: Path, shape: Shape
) -> None:
    """A real Prometheus scraping the app (one kept-alive connection: always the same worker)."""
    from prometheus_server import PrometheusServer, render_config

    app = start(launch, shape, _env(tmp_path))
    warmup = load(app.url, 20)  # creates the series before the window starts
    config = render_config(
        tmp_path / "prometheus.yml",
        targets={"trader-api": [f"127.0.0.1:{app.port}"]},
        scrape_interval="1s",
        drop_jobs=("prometheus", "otel-collector", "otel-collector-self"),
    )
    with PrometheusServer(config, tmp_path / "tsdb") as prometheus:
        job = 'job="trader-api"'

        def query(expr: str) -> float:
            result = prometheus.query(expr)
            return float(result[0]["value"][1]) if result else float("nan")

        deadline = time.monotonic() + 30
        while not query(f"max(count_over_time(http_requests_total{{{job}}}[30s]))") >= 3:
            assert time.monotonic() < deadline, prometheus.tail()
            time.sleep(0.5)
        began = time.time()
        sent = load(app.url, 400)
        time.sleep(SETTLE_SECONDS + 3)  # shared, then scraped at least twice
        window = int(time.time() - began) + 2
        increase = query(f"sum(increase(http_requests_total{{{job}}}[{window}s]))")
        resets = query(f"sum(resets(http_requests_total{{{job}}}[{window}s]))")
        latest = query(f"sum(http_requests_total{{{job}}})")
    assert resets == 0, f"{shape.name}: counters went backwards {resets} times"
    assert latest == warmup + sent, f"{shape.name}: Prometheus reads {latest} after {warmup + sent}"
    # increase() extrapolates to the window's ends: at most one scrape interval more per end.
    assert sent <= increase <= sent * window / (window - 2.5), f"{shape.name}: increase {increase} for {sent}"


@pytest.mark.timeout(90)
def test_a_single_process_server_serves_as_before(launch: Launcher, tmp_path: Path) -> None:
    """One uvicorn process: no snapshot directory, no thread, no worker label."""
    env = _env(tmp_path)
    app = launch.uvicorn("workers_app", env)
    sent = load(app.url, 100)
    text = scrape(app.url)
    assert total(text) == sent == 100
    promtool(text)
    assert per_worker(text, "target_info") == [""]
    assert per_worker(text, "worker_last_pid") == [""]
    assert total(text, "worker_open_jobs") == sent
    base = Path(env["TMPDIR"]) / f"otel-trader-metrics-{os.geteuid()}"
    assert not base.exists(), list(base.rglob("*"))


@pytest.mark.timeout(90)
def test_an_explicit_directory_joins_separate_servers(launch: Launcher, tmp_path: Path) -> None:
    """TELEMETRY_MULTIPROCESS_DIR: two single-process servers sharing one directory serve one total."""
    env = _env(tmp_path, TELEMETRY_MULTIPROCESS_DIR=str(tmp_path / "shared"))
    first = launch.uvicorn("workers_app", env)
    second = launch.uvicorn("workers_app", env)
    sent = load(first.url, 100) + load(second.url, 60)
    time.sleep(SETTLE_SECONDS)
    for app in (first, second):
        text = settled(app.url, sent)
        assert total(text) == sent == 160
        assert len(per_worker(text, "target_info")) == 2
        promtool(text)
