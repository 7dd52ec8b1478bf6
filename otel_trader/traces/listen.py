"""A small OTLP receiver for ``otel-trader traces --grpc PORT`` / ``--http PORT``.

An application points ``OTLP_ENDPOINT`` at it during development (``127.0.0.1:4317`` for gRPC,
``http://127.0.0.1:4318`` for HTTP) and its spans are handed to a callback as they arrive. It
answers the metrics and logs services too, with success, and drops what they carry: an app
exporting every signal to it must not log export failures every few seconds.

gRPC uses grpcio with the services generated in ``opentelemetry-proto``; HTTP is the standard
library's threading server, accepting protobuf and JSON bodies (gzip or not) on ``/v1/traces``,
``/v1/metrics`` and ``/v1/logs``. Loopback by default; it has no authentication or TLS, so give
another bind address only on a network you trust.
"""

from __future__ import annotations

import gzip
import json
import logging
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from otel_trader.traces.model import Span, spans_from_json, spans_from_proto

__all__ = ["MAX_MESSAGE_BYTES", "OtlpReceiver", "parse_address"]

logger = logging.getLogger("otel_trader.traces")

#: Largest request accepted (gRPC message or HTTP body after decompression), as the collector's default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

SpanCallback = Callable[[list[Span]], None]


def parse_address(value: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``PORT``, ``HOST:PORT`` or ``[IPv6]:PORT`` → (host, port); raises ValueError when malformed."""
    text = value.strip()
    for scheme in ("http://", "https://", "grpc://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
    text = text.rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not a port or HOST:PORT")
    return host, int(port)


class _Http(BaseHTTPRequestHandler):
    server_version = "otel-trader-traces"
    protocol_version = "HTTP/1.1"
    receiver: OtlpReceiver  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        logger.debug("otlp http: " + format, *args)

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        path = self.path.split("?", 1)[0].rstrip("/")
        responses: dict[str, Any] = {
            "/v1/traces": ExportTraceServiceResponse,
            "/v1/metrics": ExportMetricsServiceResponse,
            "/v1/logs": ExportLogsServiceResponse,
        }
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_MESSAGE_BYTES:
            self._reply(413, b"request too large", "text/plain")
            self.close_connection = True
            return
        body = self.rfile.read(length)
        if path not in responses:
            self._reply(404, b"not an OTLP path: use /v1/traces, /v1/metrics or /v1/logs", "text/plain")
            return
        is_json = "json" in (self.headers.get("Content-Type") or "")
        try:
            encoding = (self.headers.get("Content-Encoding") or "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if len(body) > MAX_MESSAGE_BYTES:
                raise ValueError("request too large")
            if path == "/v1/traces":
                if is_json:
                    spans = spans_from_json(json.loads(body or b"{}"))
                else:
                    spans = spans_from_proto(ExportTraceServiceRequest.FromString(body))
                self.receiver.deliver(spans)
        except Exception as exc:  # a malformed export is the sender's problem: answer 400, keep serving
            self._reply(400, f"bad OTLP request: {type(exc).__name__}".encode(), "text/plain")
            return
        if is_json:
            self._reply(200, b"{}", "application/json")
        else:
            self._reply(200, responses[path]().SerializeToString(), "application/x-protobuf")


class OtlpReceiver:
    """Receives OTLP over gRPC and/or HTTP and calls ``on_spans`` with each request's spans.

    ``on_spans`` runs on the servers' threads; it must be quick and thread-safe. Port 0 picks a
    free port: read :attr:`grpc_port` / :attr:`http_port` after :meth:`start`.
    """

    def __init__(
        self,
        on_spans: SpanCallback,
        *,
        grpc_address: tuple[str, int] | None = None,
        http_address: tuple[str, int] | None = None,
    ) -> None:
        if grpc_address is None and http_address is None:
            raise ValueError("give a gRPC or an HTTP address (or both)")
        self.on_spans = on_spans
        self.grpc_address = grpc_address
        self.http_address = http_address
        self.grpc_port: int | None = None
        self.http_port: int | None = None
        self.requests = 0
        self.spans = 0
        self._lock = threading.Lock()
        self._grpc: Any = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    def deliver(self, spans: list[Span]) -> None:
        """Count one export request and hand its spans on (called by both servers)."""
        with self._lock:
            self.requests += 1
            self.spans += len(spans)
        if spans:
            self.on_spans(spans)

    def start(self) -> OtlpReceiver:
        """Bind and start serving; raises OSError when an address cannot be bound."""
        try:
            if self.grpc_address is not None:
                self._start_grpc(*self.grpc_address)
            if self.http_address is not None:
                self._start_http(*self.http_address)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_grpc(self, host: str, port: int) -> None:
        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's method name
                receiver.deliver(spans_from_proto(request))
                return trace_service_pb2.ExportTraceServiceResponse()

        class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                return metrics_service_pb2.ExportMetricsServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                return logs_service_pb2.ExportLogsServiceResponse()

        server = grpc.server(
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="otlp-grpc"),
            options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.so_reuseport", 0)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            bound = server.add_insecure_port(target)
        except RuntimeError as exc:  # grpcio raises instead of returning 0 on newer releases
            raise OSError(f"cannot listen for OTLP/gRPC on {target}: {exc}") from exc
        if not bound:
            raise OSError(f"cannot listen for OTLP/gRPC on {target} (in use?)")
        server.start()
        self._grpc = server
        self.grpc_port = bound

    def _start_http(self, host: str, port: int) -> None:
        handler = type("Handler", (_Http,), {"receiver": self})
        server = ThreadingHTTPServer((host, port), handler)
        server.daemon_threads = True
        self._http = server
        self.http_port = int(server.server_address[1])
        self._http_thread = threading.Thread(target=server.serve_forever, name="otlp-http", daemon=True)
        self._http_thread.start()

    def stop(self, grace: float = 1.0) -> None:
        """Stop both servers; in-flight requests get ``grace`` seconds."""
        if self._grpc is not None:
            self._grpc.stop(grace).wait(grace + 1.0)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join(grace + 1.0)
            self._http_thread = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def endpoints(self) -> list[str]:
        """What to set ``OTLP_ENDPOINT`` to, one per protocol listening."""
        out = []
        if self.grpc_port is not None and self.grpc_address is not None:
            out.append(f"OTLP_ENDPOINT={_display_host(self.grpc_address[0])}:{self.grpc_port} (gRPC)")
        if self.http_port is not None and self.http_address is not None:
            out.append(
                f"OTLP_ENDPOINT=http://{_display_host(self.http_address[0])}:{self.http_port} "
                "OTLP_PROTOCOL=http/protobuf (HTTP)"
            )
        return out


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
