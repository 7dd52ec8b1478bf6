"""Show traces in the terminal as waterfalls, from the collector's file output or received over OTLP.

``otel-trader traces [FILE ...]`` (also ``python -m otel_trader.traces``) reads OTLP/JSON lines
(the collector's ``file`` exporter, such as the demo's ``signoz-sink.jsonl``) and prints the
most recent traces; ``--grpc PORT`` / ``--http PORT`` listen for OTLP themselves, so an app can
point ``OTLP_ENDPOINT`` straight at this command, and print each trace once it is complete
(no new span for ``--settle`` seconds). ``--follow`` does the same for a growing file.

Without a FILE or a listener it reads ``$OTEL_TRADER_TRACES_FILE``, else the newest demo run's
``signoz-sink.jsonl``. Filters: ``--service``, ``--route``, ``--min-duration``, ``--errors``,
``--trace-id``. ``--save FILE`` (default ``$OTEL_TRADER_TRACES_FILE``) appends what a listener
receives as OTLP/JSON lines, so ``otel-trader traces --trace-id ID`` finds it later.
Colours on a terminal, plain text otherwise (``--color``); a SigNoz link per trace when
``SIGNOZ_URL`` (or ``--signoz-url``) is set.

Exit status: 0; 1 when a source cannot be read or ``--trace-id`` is not found; 2 for bad options.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Any

from otel_trader.traces.model import FileTail, Span, Trace, TraceFilter, TraceStore, read_file, spans_to_json

__all__ = ["add_arguments", "default_sources", "main", "parse_duration", "run"]

#: File a listener saves to and a bare ``otel-trader traces`` reads, when set.
TRACES_FILE_ENV = "OTEL_TRADER_TRACES_FILE"
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m)?\s*$")


def parse_duration(text: str) -> int:
    """``250ms``, ``1.5s``, ``800us``, ``2m`` → nanoseconds; a bare number means milliseconds."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 250ms, 1.5s, 800us)")
    return int(float(match.group(1)) * _UNITS[match.group(2) or "ms"])


def _address(text: str) -> tuple[str, int]:
    from otel_trader.traces.listen import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``traces`` options (shared by ``otel-trader traces`` and ``python -m otel_trader.traces``)."""
    parser.add_argument(
        "files",
        nargs="*",
        type=Path,
        metavar="FILE",
        help=f"OTLP/JSON lines, e.g. the demo's signoz-sink.jsonl (default ${TRACES_FILE_ENV}, "
        "else the newest demo run's)",
    )
    source = parser.add_argument_group("listening for OTLP (implies --follow)")
    source.add_argument(
        "--grpc", type=_address, metavar="[HOST:]PORT", help="receive OTLP/gRPC here (loopback by default)"
    )
    source.add_argument(
        "--http", type=_address, metavar="[HOST:]PORT", help="receive OTLP/HTTP (/v1/traces) here"
    )
    source.add_argument(
        "--save",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"append received spans to FILE as OTLP/JSON lines (default ${TRACES_FILE_ENV} when set)",
    )
    which = parser.add_argument_group("which traces")
    which.add_argument("--trace-id", metavar="ID", help="only this trace (full id or a unique prefix)")
    which.add_argument("--service", metavar="NAME", help="only traces with a span of this service (glob)")
    which.add_argument(
        "--route",
        metavar="ROUTE",
        help="only traces whose server route or root span matches (glob: '/orders*')",
    )
    which.add_argument(
        "--min-duration",
        type=parse_duration,
        default=0,
        metavar="D",
        help="only traces at least this long: 250ms, 1.5s, 800us (a bare number is ms)",
    )
    which.add_argument("--errors", action="store_true", help="only traces with an error span")
    which.add_argument(
        "--limit",
        type=_positive,
        default=None,
        metavar="N",
        help="show the N most recent matching traces (default 10); when following, stop after N",
    )
    which.add_argument("--slowest", action="store_true", help="the slowest traces instead of the most recent")
    follow = parser.add_argument_group("following")
    follow.add_argument("-f", "--follow", action="store_true", help="keep reading FILE and print new traces")
    follow.add_argument(
        "--settle",
        type=_seconds,
        default=1.5,
        metavar="S",
        help="print a trace once no new span of it arrived for S seconds (default 1.5)",
    )
    follow.add_argument("--duration", type=_seconds, default=None, metavar="S", help="stop after S seconds")
    out = parser.add_argument_group("output")
    out.add_argument("--list", action="store_true", help="one line per trace instead of its waterfall")
    out.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="default auto")
    out.add_argument(
        "--width", type=_positive, default=None, help="line width (default: the terminal's, or 120)"
    )
    out.add_argument(
        "--max-lines", type=_positive, default=300, metavar="N", help="lines per trace at most (default 300)"
    )
    out.add_argument(
        "--signoz-url",
        default=os.environ.get("SIGNOZ_URL") or None,
        metavar="URL",
        help="SigNoz UI base URL for a link per trace (default $SIGNOZ_URL)",
    )


def default_sources() -> list[Path]:
    """``$OTEL_TRADER_TRACES_FILE`` if set, else the newest demo run's ``signoz-sink.jsonl`` (or none)."""
    configured = os.environ.get(TRACES_FILE_ENV, "").strip()
    if configured:
        return [Path(configured).expanduser()]
    runs = glob.glob(os.path.join(tempfile.gettempdir(), "otel-trader-demo-*", "signoz-sink.jsonl"))
    if not runs:
        return []
    return [Path(max(runs, key=lambda p: os.stat(p).st_mtime))]


class _Output:
    """Prints traces through one rich console, matching the filter, counting what it printed."""

    def __init__(self, args: argparse.Namespace, file: IO[str] | None = None) -> None:
        from otel_trader.traces.render import RenderOptions, make_console

        self.console = make_console(file, color=args.color, width=args.width)
        encoding = (getattr(self.console.file, "encoding", None) or "utf-8").lower().replace("-", "")
        self.options = RenderOptions(
            width=self.console.width,
            signoz_url=args.signoz_url,
            max_lines=args.max_lines,
            unicode=encoding.startswith("utf"),
        )
        self.list_mode = bool(args.list)
        self.printed = 0

    def show(self, trace: Trace, printed_before: int = 0) -> None:
        """Print ``trace``; ``printed_before``: how many of its spans an earlier print showed."""
        from rich.text import Text

        from otel_trader.traces.render import render_trace, summary_line

        if self.list_mode:
            self.console.print(summary_line(trace, self.options), crop=True)
        else:
            if self.printed:
                self.console.print()
            if printed_before:
                late = len(trace.spans) - printed_before
                self.console.print(
                    Text(
                        f"updated: {late:,} more span{'s' if late != 1 else ''} arrived after it was printed",
                        "dim",
                    )
                )
            self.console.print(render_trace(trace, self.options), crop=True)
        self.printed += 1
        self.console.file.flush()


def _filter(args: argparse.Namespace) -> TraceFilter:
    return TraceFilter(
        service=args.service,
        route=args.route,
        min_duration_ns=args.min_duration,
        errors_only=args.errors,
        trace_id=args.trace_id,
    )


def _say(message: str) -> None:
    print(f"otel-trader traces: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``otel-trader traces`` with parsed ``args``; returns the exit status."""
    try:
        import rich  # noqa: F401 - the renderer's dependency, an extra of otel-trader
    except ModuleNotFoundError:
        _say("drawing traces needs rich: pip install 'otel-trader[traces]'")
        return 1
    listening = args.grpc is not None or args.http is not None
    files: list[Path] = list(args.files)
    if not files and not listening:
        files = default_sources()
        if not files:
            _say(
                "no traces to read: give a FILE (the collector's file exporter output, e.g. the demo's "
                f"signoz-sink.jsonl), set ${TRACES_FILE_ENV}, or listen with --grpc PORT / --http PORT "
                "and point your app's OTLP_ENDPOINT at it"
            )
            return 1
    if listening or args.follow:
        return _follow(args, files, listening)
    return _show_files(args, files)


def _show_files(args: argparse.Namespace, files: list[Path]) -> int:
    store = TraceStore(max_traces=1_000_000)
    for path in files:
        try:
            store.add(read_file(path))
        except (OSError, ValueError) as exc:
            _say(f"cannot read {path}: {exc}")
            return 1
    wanted = _filter(args)
    traces = [t for t in store.traces() if wanted.matches(t)]
    where = ", ".join(str(p) for p in files)
    if not traces:
        if args.trace_id:
            _say(f"trace {args.trace_id} not found in {where} ({len(store):,} traces read)")
            return 1
        _say(f"no trace matches ({len(store):,} traces read from {where})")
        return 0
    limit = args.limit or (len(traces) if args.trace_id else 10)
    if args.slowest:
        chosen = sorted(traces, key=lambda t: t.duration_ns, reverse=True)[:limit]
    else:
        chosen = traces[-limit:]
    output = _Output(args)
    for trace in chosen:
        output.show(trace)
    if len(chosen) < len(traces):
        what = "slowest" if args.slowest else "most recent"
        _say(f"showed the {what} {len(chosen):,} of {len(traces):,} matching traces (--limit N for more)")
    return 0


class _Stop(Exception):
    """SIGTERM while following: stop like Ctrl-C."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def _follow(args: argparse.Namespace, files: list[Path], listening: bool, out: IO[str] | None = None) -> int:
    store = TraceStore()
    lock = threading.Lock()
    wanted = _filter(args)
    limit = args.limit or (1 if args.trace_id else None)
    save_path: Path | None = args.save
    if save_path is None and listening and os.environ.get(TRACES_FILE_ENV, "").strip():
        save_path = Path(os.environ[TRACES_FILE_ENV].strip()).expanduser()
    save: IO[str] | None = None
    receiver: Any = None

    def on_spans(spans: list[Span]) -> None:
        with lock:
            store.add(spans)
            if save is not None:
                save.write(json.dumps(spans_to_json(spans), separators=(",", ":")) + "\n")
                save.flush()

    tails = []
    for path in files:
        tail = FileTail(path)
        try:
            # What is in the file already only completes traces still arriving; it is not printed.
            store.add(tail.read_new())
        except OSError as exc:
            _say(f"cannot read {path}: {exc}")
            return 1
        store.settled(0.0, orphan_grace=0.0)
        tails.append(tail)

    previous = signal.getsignal(signal.SIGTERM)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGTERM, _raise_stop)
    output = _Output(args, out)
    try:
        if save_path is not None:
            save_path.parent.mkdir(parents=True, exist_ok=True)
            save = save_path.open("a", encoding="utf-8")
        if listening:
            from otel_trader.traces.listen import OtlpReceiver

            receiver = OtlpReceiver(on_spans, grpc_address=args.grpc, http_address=args.http)
            try:
                receiver.start()
            except OSError as exc:
                _say(str(exc))
                return 1
            for endpoint in receiver.endpoints():
                _say(f"listening: point your app at it with {endpoint}")
        if files:
            _say("following " + ", ".join(str(p) for p in files))
        if save is not None:
            _say(f"saving received spans to {save_path}")
        _say("Ctrl-C to stop")
        deadline = time.monotonic() + args.duration if args.duration is not None else None
        try:
            while True:
                for tail in tails:
                    spans = tail.read_new()
                    if spans:
                        with lock:
                            store.add(spans)
                with lock:
                    ready = store.settled(args.settle)
                for trace, before in ready:
                    if wanted.matches(trace):
                        output.show(trace, before)
                        if limit is not None and output.printed >= limit:
                            return 0
                if deadline is not None and time.monotonic() >= deadline:
                    break
                time.sleep(0.1)
        except (KeyboardInterrupt, _Stop):
            pass
        # Stopping: what arrived but is not quiet yet is printed as it stands.
        for tail in tails:
            with lock:
                store.add(tail.read_new())
        with lock:
            ready = store.settled(0.0, orphan_grace=0.0)
        for trace, before in ready:
            if wanted.matches(trace) and (limit is None or output.printed < limit):
                output.show(trace, before)
        return 0
    finally:
        if receiver is not None:
            receiver.stop()
            _say(f"received {receiver.spans:,} spans in {receiver.requests:,} OTLP requests")
        if save is not None:
            save.close()
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m otel_trader.traces``."""
    parser = argparse.ArgumentParser(
        prog="python -m otel_trader.traces",
        description=(__doc__ or "").strip().splitlines()[0],
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
