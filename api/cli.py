"""The `evoprune` command line: one sub-command module per verb, registered here."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import tempfile
from collections.abc import Sequence

from evoprune import __version__

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
# The sub-commands that build Keras models in this process (and in the local Ray workers it starts).
TENSORFLOW_COMMANDS = frozenset({"run", "resume", "extract", "bench", "analyze"})
# TensorFlow's C++ log level: 3 keeps only fatal messages. On a machine without a GPU the levels below print
# "failed call to cuInit" (an ERROR) on every start, which is the normal case there, not a fault.
QUIET_TF_LOG_LEVEL = "3"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(
        prog="evoprune",
        description="Multi-objective evolutionary pruning of transfer-learning networks (MO-EvoPruneDeepTL).",
    )
    parser.add_argument("--version", action="version", version=f"evoprune {__version__}")
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
    if args.command in TENSORFLOW_COMMANDS:
        quiet_tensorflow_start()
    return int(handler(args))


def quiet_tensorflow_start() -> None:
    """Start TensorFlow without its start-up chatter, unless the user chose a log level.

    The level is set before TensorFlow is imported (it reads the variable once) and is inherited by the Ray
    workers a local run starts. Some messages (oneDNN's notice, "Could not find cuda drivers") are written
    before TensorFlow's logging reads any setting, so the import itself runs with the process's stderr set
    aside; what it wrote is shown if the import fails. Nothing happens under another Keras backend, or when
    the user set TF_CPP_MIN_LOG_LEVEL: their setting and all its output stand.
    """
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_LOG_LEVEL
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow" or "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow  # noqa: F401 (imported for its side effects only, here where it is quiet)
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


if __name__ == "__main__":
    sys.exit(main())
