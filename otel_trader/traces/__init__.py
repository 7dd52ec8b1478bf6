"""Traces without a backend: ``otel-trader traces`` draws them in the terminal as waterfalls.

:mod:`.model` decodes OTLP (the collector's file output, OTLP/HTTP JSON, protobuf) into
:class:`~.model.Span` and :class:`~.model.Trace`; :mod:`.render` draws them with rich (the
``otel-trader[traces]`` extra); :mod:`.listen` receives OTLP/gRPC and OTLP/HTTP itself;
:mod:`.cli` is the command. Importing this package imports none of them.
"""

#: The command that opens a trace locally; error reports and log lines quote it.
LOCAL_COMMAND = "otel-trader traces --trace-id {trace_id}"


def local_command(trace_id: str) -> str:
    """``otel-trader traces --trace-id <trace_id>``: how to open that trace in the terminal."""
    return LOCAL_COMMAND.format(trace_id=trace_id)


__all__ = ["LOCAL_COMMAND", "local_command"]
