"""The `evoprune` command line: one sub-command module per verb, registered here."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module exposes `register(subparsers)`, adding its sub-command with `set_defaults(handler=...)`;
# a handler takes the parsed namespace and returns the exit status.
COMMAND_MODULES = (
    "evoprune.api.cli_run",
    "evoprune.api.cli_extract",
    "evoprune.api.cli_bench",
    "evoprune.api.cli_validate",
    "evoprune.api.cli_analyze",
    "evoprune.api.cli_export",
    "evoprune.api.cli_serve",
    "evoprune.api.cli_submit",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="evoprune",
        description="Multi-objective evolutionary pruning of transfer-learning networks (MO-EvoPruneDeepTL).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line and returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
