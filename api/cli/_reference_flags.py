"""The reference implementation's command line (`--dataset-csv`, `--ga-csv`, `--run`) for run and validate."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from evoprune.api.cli._arg_types import non_negative_int

if TYPE_CHECKING:
    from evoprune.shared.config import ExperimentConfig

DEFAULT_EXTRACTOR = "resnet50"
FLAGS = ("--dataset-csv", "--ga-csv", "--run", "--extractor")


def add_reference_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the reference's flags to a sub-command that takes an optional CONFIG.

    Args:
        parser: the sub-command's parser.

    """
    group = parser.add_argument_group(
        "the reference implementation's CSV configs (instead of CONFIG)",
        "MO-EvoPruneDeepTL's `main.py --dataset … --configGA … --run N`; the OoD sets are the "
        "configDataset…OOD.csv files beside the dataset file, except its own.",
    )
    group.add_argument("--dataset-csv", metavar="FILE", help="the dataset CSV, e.g. configDatasetRPS.csv")
    group.add_argument("--ga-csv", metavar="FILE", help="the GA CSV, e.g. configGAFS.csv")
    group.add_argument(
        "--run",
        type=non_negative_int,
        metavar="N",
        help="the execution number: one run with seed SEED+N (SEED: --seed, default 0)",
    )
    group.add_argument(
        "--extractor",
        metavar="NAME",
        help="backbone: resnet50 (default), densenet, vgg19, pixels or any keras.applications model",
    )


def reference_config(args: argparse.Namespace) -> tuple[ExperimentConfig, str] | None:
    """Build the config from the reference's CSV files when their flags are given.

    Args:
        args: parsed arguments with `config`, `seed` and the flags of `add_reference_arguments`.

    Returns:
        (config, where it came from), or None when none of the reference's flags is given.

    Raises:
        ConfigError: the flags are combined wrongly, or a CSV file is missing or invalid (the message names
            the file, line and column).

    """
    from evoprune.api.cli._reference_csv import load_reference_config
    from evoprune.shared.config import ConfigError

    given = [flag for flag in FLAGS if getattr(args, flag.lstrip("-").replace("-", "_")) is not None]
    if not given:
        return None
    if args.config:
        raise ConfigError(
            [
                f"give either CONFIG ({args.config}) or the reference's CSV files ({', '.join(given)}), "
                "not both"
            ],
            "command line",
        )
    missing = [flag for flag in ("--dataset-csv", "--ga-csv") if flag not in given]
    if missing:
        raise ConfigError(
            [f"{' and '.join(missing)} missing: the reference's CSV config needs --dataset-csv and --ga-csv"],
            "command line",
        )
    run = args.run if args.run is not None else 0
    base_seed = args.seed if args.seed is not None else 0
    config = load_reference_config(
        args.dataset_csv, args.ga_csv, run, args.extractor or DEFAULT_EXTRACTOR, base_seed=base_seed
    )
    return config, f"{args.dataset_csv} + {args.ga_csv} (run {run})"
