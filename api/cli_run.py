"""The `evoprune run` and `evoprune resume` sub-commands: an experiment end to end from the terminal."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoprune.api.cli_types import non_negative_int, positive_int
from evoprune.api.reference_flags import add_reference_arguments, reference_config
from evoprune.coordinator.evaluator import EvaluationError, Evaluator
from evoprune.coordinator.experiment import Experiment, ExperimentError, check_new_results_dir, load_resumable
from evoprune.shared.config import (
    NO_OOD_MESSAGE,
    ConfigError,
    ExperimentConfig,
    demo_config_path,
    load_config,
    parse_config,
)
from evoprune.shared.events import EvaluationFinished, Event, EventBus, ExperimentFinished, FrontChanged
from evoprune.shared.fitness_cache import FitnessCache
from evoprune.shared.fitness_cache_factory import open_fitness_cache
from evoprune.workers.features import FeatureSet

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Backend:
    """Where features and evaluations come from; the command line's only seam (tests swap in fakes)."""

    load_features: Callable[[ExperimentConfig], FeatureSet]
    make_evaluator: Callable[[FeatureSet, ExperimentConfig, int | None, str | None], Evaluator]


def _load_features(config: ExperimentConfig) -> FeatureSet:
    from evoprune.workers.assemble import load_feature_set

    if not config.ood:
        # the feature loader allows none (its tests split without OoD); an experiment cannot score AUROC
        raise ExperimentError(NO_OOD_MESSAGE)

    try:
        return load_feature_set(config, progress=True)
    except (ValueError, OSError) as error:
        # DatasetError, BackboneError and feature-schema errors are ValueErrors naming the file or field.
        raise ExperimentError(f"the dataset cannot be loaded: {error}") from None


def _make_evaluator(
    feature_set: FeatureSet, config: ExperimentConfig, workers: int | None, address: str | None
) -> Evaluator:
    if workers == 0:
        from evoprune.coordinator.evaluator import InProcessEvaluator

        return InProcessEvaluator.for_feature_set(feature_set, config)
    from evoprune.coordinator.dispatch import RayEvaluator

    return RayEvaluator(feature_set, config, workers=workers, address=address)


DEFAULT_BACKEND = Backend(load_features=_load_features, make_evaluator=_make_evaluator)


def register(subparsers: Any) -> None:
    """Add `run` and `resume` to the `evoprune` parser.

    Args:
        subparsers: the object returned by `add_subparsers`.

    """
    run = subparsers.add_parser(
        "run",
        help="run an experiment (no CONFIG: the offline demo)",
        description="Runs an NSGA-II experiment on a local Ray instance or a cluster and writes its results.",
    )
    run.add_argument(
        "config", nargs="?", metavar="CONFIG", help="experiment YAML (default: the embedded demo)"
    )
    run.add_argument("--runs", type=positive_int, help="independent runs with seeds SEED..SEED+N-1")
    run.add_argument("--max-evaluations", type=positive_int, metavar="K", help="evaluations per run")
    run.add_argument("--seed", type=int, help="seed of the first run")
    run.add_argument("--out", metavar="DIR", help="results directory (default: results/NAME-TIMESTAMP)")
    _add_runtime_options(run)
    add_reference_arguments(run)
    run.set_defaults(handler=lambda args: run_command(args, DEFAULT_BACKEND))

    resume = subparsers.add_parser(
        "resume",
        help="continue an interrupted experiment",
        description="Continues an interrupted experiment from its checkpoint; nothing is trained again.",
    )
    resume.add_argument("directory", metavar="DIR", help="the experiment's results directory")
    _add_runtime_options(resume)
    resume.set_defaults(handler=lambda args: resume_command(args, DEFAULT_BACKEND))


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
    reference = reference_config(args)
    if reference is None:
        path = Path(args.config) if args.config else demo_config_path()
        config, origin, seed = load_config(path), str(path), args.seed
    else:
        # --seed is already in: a reference run's seed is SEED + N
        (config, origin), seed = reference, None
    data = config.model_dump(mode="json")
    overrides = {"runs": args.runs, "max_evaluations": args.max_evaluations, "seed": seed}
    data["search"].update({key: value for key, value in overrides.items() if value is not None})
    return parse_config(
        data,
        origin
        + (" with command-line overrides" if any(value is not None for value in overrides.values()) else ""),
    )


def run_command(args: argparse.Namespace, backend: Backend) -> int:
    """`evoprune run`.

    Args:
        args: the parsed arguments.
        backend: feature loading and evaluator construction.

    Returns:
        The exit status.

    """
    try:
        config = resolve_config(args)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        results_dir = Path(args.out) if args.out else Path("results") / f"{config.name}-{stamp}"
        check_new_results_dir(results_dir, config)
    except (ConfigError, ExperimentError) as error:
        return _bad_input(str(error))
    return _execute(config, results_dir, args, backend, checkpoint=None)


def resume_command(args: argparse.Namespace, backend: Backend) -> int:
    """`evoprune resume DIR`.

    Args:
        args: the parsed arguments.
        backend: feature loading and evaluator construction.

    Returns:
        The exit status.

    """
    results_dir = Path(args.directory)
    try:
        config, checkpoint = load_resumable(results_dir)
    except ExperimentError as error:
        return _bad_input(str(error))
    return _execute(config, results_dir, args, backend, checkpoint=checkpoint)


def _execute(
    config: ExperimentConfig,
    results_dir: Path,
    args: argparse.Namespace,
    backend: Backend,
    checkpoint: dict[str, Any] | None,
) -> int:
    evaluator: Evaluator | None = None
    cache: FitnessCache | None = None
    progress: ProgressBar | None = None
    try:
        feature_set = backend.load_features(config)
        mask_length = config.head.mask_length(feature_set.input_dim)
        redis_url = os.environ.get("REDIS_URL")
        cache = open_fitness_cache(None, redis_url) if redis_url else None
        evaluator = backend.make_evaluator(feature_set, config, args.workers, args.address)
        bus = EventBus()
        experiment = Experiment(config, results_dir, feature_set.key, mask_length, evaluator, bus, cache)
        if checkpoint is None:
            experiment.start()
        else:
            experiment.restore(checkpoint)
        url = evaluator.describe().get("dashboard_url")
        if url:
            print(f"Ray dashboard: {url}", file=sys.stderr)
        progress = ProgressBar(experiment.total_evaluations, experiment.evaluations_done)
        bus.subscribe(progress)
        experiment.run()
    except (ConfigError, ExperimentError) as error:
        return _bad_input(str(error))
    except EvaluationError as error:
        return _failed(
            f"{error} The experiment is checkpointed; continue it with `evoprune resume {results_dir}`."
        )
    except KeyboardInterrupt:
        _failed(f"interrupted. Continue with `evoprune resume {results_dir}`.")
        return EXIT_INTERRUPTED
    finally:
        if progress is not None:
            progress.close()
        if evaluator is not None:
            evaluator.close()
        if cache is not None:
            cache.close()
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


class ProgressBar:
    """The terminal's view of an experiment: a tqdm bar fed by events."""

    def __init__(self, total: int, done: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            initial=done,
            unit="eval",
            file=sys.stderr,
            dynamic_ncols=True,
            desc="evaluations",
            mininterval=0.5,
        )
        self._hits = 0
        self._best_accuracy = float("nan")
        self._hypervolume = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, EvaluationFinished):
            self._hits += event.cached
            if not event.objectives[0] <= self._best_accuracy:
                self._best_accuracy = event.objectives[0]
            self._show(refresh=False)
            self._bar.update(1)
        elif isinstance(event, FrontChanged) and event.run == -1:
            # a batch's front changes come after its evaluations: shown now, or the bar lags one batch
            self._hypervolume = event.hypervolume
            self._show(refresh=False)
        elif isinstance(event, ExperimentFinished):
            # the summary's number (summary.json) is the one the bar ends on
            self._hypervolume = event.hypervolume
            self._show(refresh=True)

    def _show(self, refresh: bool) -> None:
        self._bar.set_postfix(
            hits=self._hits,
            best_acc=f"{self._best_accuracy:.4f}",
            hv=f"{self._hypervolume:.4f}",
            refresh=refresh,
        )

    def close(self) -> None:
        self._bar.close()
