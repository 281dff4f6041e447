"""The `evoprune run` and `evoprune resume` sub-commands: an experiment end to end from the terminal."""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoprune.api.cli._arg_types import non_negative_int, positive_int
from evoprune.api.cli._reference_flags import add_reference_arguments, reference_config
from evoprune.api.cli.commands import COMMANDS

# Registering the commands imports only the lines above: the config model, Ray and the search are imported
# when a command runs (`evoprune --help` and `validate` stay fast).
if TYPE_CHECKING:
    from evoprune.api.local_run import LocalRun
    from evoprune.coordinator.assembly import Backend
    from evoprune.shared.config import ExperimentConfig
    from evoprune.shared.storage import StoragePath

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def register(subparsers: Any) -> None:
    """Add `run` and `resume` to the `evoprune` parser.

    Args:
        subparsers: the object returned by `add_subparsers`.

    """
    run = subparsers.add_parser(
        "run",
        help=COMMANDS["run"].help,
        description="Runs an NSGA-II experiment on a local Ray instance or a cluster and writes its results.",
    )
    run.add_argument(
        "config", nargs="?", metavar="CONFIG", help="experiment YAML (default: the embedded demo)"
    )
    run.add_argument("--runs", type=positive_int, help="independent runs with seeds SEED..SEED+N-1")
    run.add_argument("--max-evaluations", type=positive_int, metavar="K", help="evaluations per run")
    run.add_argument("--seed", type=int, help="seed of the first run")
    run.add_argument(
        "--out",
        metavar="DIR",
        help="results directory, local or s3://BUCKET/PREFIX, gs://... (default: results/NAME-TIMESTAMP)",
    )
    _add_runtime_options(run)
    add_reference_arguments(run)
    run.set_defaults(handler=run_command)

    resume = subparsers.add_parser(
        "resume",
        help=COMMANDS["resume"].help,
        description="Continues an interrupted experiment from its checkpoint; nothing is trained again.",
    )
    resume.add_argument(
        "directory", metavar="DIR", help="the experiment's results directory (local, s3:// or gs://)"
    )
    _add_runtime_options(resume)
    resume.set_defaults(handler=resume_command)


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        metavar="W",
        help=(
            "worker actors (default: one per GPU in the cluster, or one per CPU node when it has no GPUs); "
            "0 evaluates in this process without Ray"
        ),
    )
    parser.add_argument("--address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")


def resolve_config(args: argparse.Namespace) -> ExperimentConfig:
    """Load the config file (the demo, or the reference's CSV files), apply the overrides and validate.

    Args:
        args: the parsed `run` arguments.

    Returns:
        The resolved config.

    Raises:
        ConfigError: the file or an override is invalid.

    """
    from evoprune.shared.config import demo_config_path, load_config

    reference = reference_config(args)
    if reference is None:
        path = Path(args.config) if args.config else demo_config_path()
        config, origin, seed = load_config(path), str(path), args.seed
    else:
        # --seed is already in: a reference run's seed is SEED + N
        (config, origin), seed = reference, None
    return config.with_search_overrides(
        runs=args.runs,
        max_evaluations=args.max_evaluations,
        seed=seed,
        origin=f"{origin} with command-line overrides",
    )


def run_command(args: argparse.Namespace, backend: Backend | None = None) -> int:
    """`evoprune run`.

    Args:
        args: the parsed arguments.
        backend: feature loading and evaluator construction (None: the real ones).

    Returns:
        The exit status.

    """
    from evoprune.api.local_run import new_results_dir, start_locally
    from evoprune.coordinator.results.directory import ExperimentError
    from evoprune.shared.config import ConfigError

    try:
        config = resolve_config(args)
        results_dir = new_results_dir(config, args.out or None)
    except (ConfigError, ExperimentError) as error:
        return _bad_input(str(error))
    return _execute(lambda run: start_locally(config, results_dir, run), results_dir, args, backend)


def resume_command(args: argparse.Namespace, backend: Backend | None = None) -> int:
    """`evoprune resume DIR`.

    Args:
        args: the parsed arguments.
        backend: feature loading and evaluator construction (None: the real ones).

    Returns:
        The exit status.

    """
    from evoprune.api.local_run import results_location, resume_locally
    from evoprune.coordinator.results.directory import ExperimentError

    try:
        results_dir = results_location(args.directory)
    except ExperimentError as error:
        return _bad_input(str(error))
    return _execute(lambda run: resume_locally(results_dir, run), results_dir, args, backend)


def _execute(
    start: Callable[[LocalRun], None],
    results_dir: StoragePath,
    args: argparse.Namespace,
    backend: Backend | None,
) -> int:
    """Run `start` with the flags' settings and turn its outcome into the exit status and messages."""
    from evoprune.api.local_run import LocalRun
    from evoprune.api.settings import local_run_settings
    from evoprune.coordinator.evaluator_interface import EvaluationError
    from evoprune.coordinator.results.directory import ExperimentError
    from evoprune.shared.config import ConfigError

    try:
        settings = local_run_settings(args.workers, args.address)
        start(LocalRun(settings, backend, announce_dashboard=True, quiet_tensorflow=True))
    except (ConfigError, ExperimentError) as error:
        return _bad_input(str(error))
    except EvaluationError as error:
        return _failed(
            f"{error} The experiment is checkpointed; continue it with `evoprune resume {results_dir}`."
        )
    except KeyboardInterrupt:
        _failed(f"interrupted. Continue with `evoprune resume {results_dir}`.")
        return EXIT_INTERRUPTED
    print(f"Results: {results_dir}", file=sys.stderr)
    print(results_dir)
    return 0


def _bad_input(message: str) -> int:
    print(_paragraph(message), file=sys.stderr)
    return EXIT_BAD_INPUT


def _failed(message: str) -> int:
    print(_paragraph(message), file=sys.stderr)
    return EXIT_FAILED


def _paragraph(message: str) -> str:
    # each line wrapped on its own: a config error's lines (one per field, a YAML snippet) keep their shape
    return "\n".join(_wrapped(line) for line in ("evoprune: error: " + message).splitlines())


def _wrapped(line: str, width: int = 110) -> str:
    if len(line) <= width:
        return line
    indent = " " * (len(line) - len(line.lstrip()))
    return textwrap.fill(line, width=width, subsequent_indent=indent + "  ")
