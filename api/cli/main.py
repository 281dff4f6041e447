"""The `evoprune` command line: one sub-command module per verb, registered here."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from evoprune.api._quiet_tensorflow import quiet_tensorflow_start
from evoprune.api.cli.commands import COMMANDS
from evoprune.api.version import __version__

# Each command's module (api/cli/commands.py) exposes `register(subparsers)`, adding its sub-command with
# `set_defaults(handler=...)`; a handler takes the parsed namespace and returns the exit status.
# The sub-commands that certainly build Keras models in this process; `run` and `resume` start TensorFlow
# here only when they need it here (cli/run.py), not when Ray workers do all the training.
TENSORFLOW_COMMANDS = frozenset({"extract", "bench", "analyze", "export"})


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser.

    Args:
        command: register only this sub-command's module (and list the others by name and help, which
            imports nothing); None registers every sub-command in full.

    Returns:
        The parser.

    """
    parser = argparse.ArgumentParser(
        prog="evoprune",
        description="Multi-objective evolutionary pruning of transfer-learning networks (MO-EvoPruneDeepTL).",
    )
    parser.add_argument("--version", action="version", version=f"evoprune {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command is None:
        wanted = {entry.module for entry in COMMANDS.values()}
    else:
        wanted = {COMMANDS[command].module} if command in COMMANDS else set()
    for name, entry in COMMANDS.items():  # in the table's order, which is the listing's
        if name in subparsers.choices:
            continue  # registered with another command of its module (run and resume)
        if entry.module in wanted:
            importlib.import_module(entry.module).register(subparsers)
        else:
            # listed by name and help only; never parsed, as main() registers the command it runs
            subparsers.add_parser(name, help=entry.help, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line and returns the exit status."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # the top-level options take no values, so the first word that is not an option names the command
    command = next((word for word in arguments if not word.startswith("-")), "")
    parser = build_parser(command)
    args = parser.parse_args(arguments)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command in TENSORFLOW_COMMANDS:
        quiet_tensorflow_start()
    return int(handler(args))

