"""`evoprune extract CONFIG`: builds the feature cache of an experiment and nothing else."""

from __future__ import annotations

import argparse
import sys

from evoprune.api.cli.commands import COMMANDS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the `extract` sub-command."""
    parser = subparsers.add_parser(
        "extract",
        help=COMMANDS["extract"].help,
        description="Runs the backbone over the dataset and every OoD source once and stores the features "
        "as content-addressed Parquet files; later runs read them and never build the backbone.",
    )
    parser.add_argument("config", help="experiment config (YAML)")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from evoprune.shared.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from evoprune.workers.features.assemble import extract_features

    try:
        paths = extract_features(config, progress=True)
    except (ValueError, OSError) as error:
        # DatasetError, BackboneError and schema errors are ValueErrors that name the file or field.
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
