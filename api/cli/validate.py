"""`evoprune validate`: checks a config and prints it fully resolved, as `evoprune run` would use it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from evoprune.api.cli._reference_flags import add_reference_arguments
from evoprune.api.cli.commands import COMMANDS
from evoprune.api.cli.run import EXIT_BAD_INPUT, resolve_config

if TYPE_CHECKING:
    from evoprune.shared.config import ExperimentConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `validate` sub-command.

    Args:
        subparsers: the object returned by `add_subparsers`.

    """
    parser = subparsers.add_parser(
        "validate",
        help=COMMANDS["validate"].help,
        description="Validates an experiment config (or the reference's CSV files) with the overrides `run` "
        "takes, and prints the resolved config as YAML with every default filled in; on a problem, prints "
        "one message per field and exits with status 2. The data is not read (`evoprune extract` does).",
    )
    parser.add_argument(
        "config", nargs="?", metavar="CONFIG", help="experiment YAML (default: the embedded demo)"
    )
    parser.add_argument("--runs", type=int, help="as for `run`")
    parser.add_argument("--max-evaluations", type=int, metavar="K", help="as for `run`")
    parser.add_argument("--seed", type=int, help="as for `run`")
    add_reference_arguments(parser)
    parser.set_defaults(handler=validate_command)


def missing_data_warnings(config: ExperimentConfig) -> list[str]:
    """Name the folder and feature-file sources that do not exist on this machine.

    Args:
        config: the resolved config.

    Returns:
        One message per missing path (empty when all exist or nothing is local).

    """
    sources = [("dataset.source", config.dataset.source)]
    sources += [(f"ood.{index}.source", ood.source) for index, ood in enumerate(config.ood)]
    warnings = []
    for field, source in sources:
        kind, _, rest = source.partition(":")
        path = Path(rest).expanduser()
        if kind == "folder" and not path.is_dir():
            warnings.append(f"{field}: {path} is not a folder on this machine")
        elif kind == "features" and not path.is_file():
            warnings.append(f"{field}: {path} is not a file on this machine")
    return warnings


def validate_command(args: argparse.Namespace) -> int:
    """`evoprune validate`.

    Args:
        args: the parsed arguments.

    Returns:
        0 for a valid config (printed on stdout), 2 otherwise (the problems on stderr).

    """
    from evoprune.shared.config import ConfigError

    try:
        config = resolve_config(args)
    except ConfigError as error:
        print(f"evoprune: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for warning in missing_data_warnings(config):
        print(f"evoprune: warning: {warning}", file=sys.stderr)
    sys.stdout.write(config.to_yaml())
    return 0
