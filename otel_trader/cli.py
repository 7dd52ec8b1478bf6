"""The ``otel-trader`` command.

Subcommands live in their own modules, each with ``add_arguments(parser)`` and
``run(args) -> int`` (exit status), and are listed in :data:`SUBCOMMANDS`. A subcommand whose
module is not part of this installation is simply not offered.

A subcommand module's docstring gives the help text (its first line).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

__all__ = ["SUBCOMMANDS", "main"]

#: name → module providing ``add_arguments(parser)`` and ``run(args) -> int``.
SUBCOMMANDS: dict[str, str] = {
    "demo": "otel_trader.demo.runner",
    "collector": "otel_trader.collector.cli",
    "traces": "otel_trader.traces.cli",
}


def _load(module: str) -> ModuleType | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:  # not installed here; a missing dependency inside it still raises
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="otel-trader", description="OpenTelemetry observability for FastAPI trading services."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in SUBCOMMANDS.items():
        module = _load(module_name)
        if module is None:
            continue
        summary = (module.__doc__ or name).strip().splitlines()[0]
        command = sub.add_parser(name, help=summary, description=summary)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``otel-trader`` console script."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args._run(args))


if __name__ == "__main__":
    raise SystemExit(main())
