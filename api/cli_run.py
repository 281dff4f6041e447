"""The `evoprune run` and `evoprune resume` sub-commands: an experiment end to end from the terminal."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoprune.api.cli_commands import COMMANDS
from evoprune.api.cli_types import non_negative_int, positive_int
from evoprune.api.quiet_tensorflow import quiet_tensorflow_start
from evoprune.api.reference_flags import add_reference_arguments, reference_config

# Registering the commands imports only the lines above: the config model, Ray and the search are imported
# when a command runs (`evoprune --help` and `validate` stay fast).
if TYPE_CHECKING:
    from evoprune.coordinator.assembly import Backend, RunSettings
    from evoprune.coordinator.experiment import Experiment
    from evoprune.shared.config import ExperimentConfig
    from evoprune.shared.evaluation_row import EvaluationRow
    from evoprune.shared.events import Event

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
    run.add_argument("--out", metavar="DIR", help="results directory (default: results/NAME-TIMESTAMP)")
    _add_runtime_options(run)
    add_reference_arguments(run)
    run.set_defaults(handler=run_command)

    resume = subparsers.add_parser(
        "resume",
        help=COMMANDS["resume"].help,
        description="Continues an interrupted experiment from its checkpoint; nothing is trained again.",
    )
    resume.add_argument("directory", metavar="DIR", help="the experiment's results directory")
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
    from evoprune.shared.config import demo_config_path, load_config, parse_config

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


def run_command(args: argparse.Namespace, backend: Backend | None = None) -> int:
    """`evoprune run`.

    Args:
        args: the parsed arguments.
        backend: feature loading and evaluator construction (None: the real ones).

    Returns:
        The exit status.

    """
    from evoprune.coordinator.results_dir import ExperimentError, check_new_results_dir
    from evoprune.shared.config import ConfigError

    try:
        config = resolve_config(args)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        results_dir = Path(args.out) if args.out else Path("results") / f"{config.name}-{stamp}"
        check_new_results_dir(results_dir, config)
    except (ConfigError, ExperimentError) as error:
        return _bad_input(str(error))
    return _execute(config, results_dir, args, backend, checkpoint=None)


def resume_command(args: argparse.Namespace, backend: Backend | None = None) -> int:
    """`evoprune resume DIR`.

    Args:
        args: the parsed arguments.
        backend: feature loading and evaluator construction (None: the real ones).

    Returns:
        The exit status.

    """
    from evoprune.coordinator.results_dir import ExperimentError, load_resumable

    results_dir = Path(args.directory)
    try:
        config, checkpoint = load_resumable(results_dir)
    except ExperimentError as error:
        return _bad_input(str(error))
    return _execute(config, results_dir, args, backend, checkpoint=checkpoint)


def run_settings(args: argparse.Namespace) -> RunSettings:
    """The settings of `run` and `resume`: their flags, and the shared fitness cache as the service reads it.

    Args:
        args: the parsed arguments.

    Returns:
        The settings.

    Raises:
        ConfigError: the environment names the cache badly (EVOPRUNE_REDIS_PREFIX).

    """
    from pydantic import ValidationError

    from evoprune.api.settings import SharedCacheEnvironment
    from evoprune.coordinator.assembly import RunSettings
    from evoprune.shared.config import ConfigError

    try:
        cache = SharedCacheEnvironment()
    except ValidationError as error:
        raise ConfigError([f"environment: {' '.join(str(error).split())}"]) from None
    return RunSettings(
        workers=args.workers,
        address=args.address,
        redis_url=cache.redis_url or None,
        redis_prefix=cache.redis_prefix,
        show_progress=True,
    )


def _execute(
    config: ExperimentConfig,
    results_dir: Path,
    args: argparse.Namespace,
    backend: Backend | None,
    checkpoint: dict[str, Any] | None,
) -> int:
    from evoprune.coordinator.assembly import DEFAULT_BACKEND, run_experiment
    from evoprune.coordinator.evaluator_interface import EvaluationError
    from evoprune.coordinator.results_dir import ExperimentError
    from evoprune.shared.config import ConfigError
    from evoprune.shared.events import EventBus

    bus = EventBus()
    progress: ProgressBar | None = None

    def ready(experiment: Experiment, restored: list[EvaluationRow]) -> None:
        nonlocal progress
        url = experiment.evaluator.describe().get("dashboard_url")
        if url:
            print(f"Ray dashboard: {url}", file=sys.stderr)
        progress = ProgressBar(experiment.total_evaluations, experiment.evaluations_done)
        bus.subscribe(progress)

    try:
        settings = run_settings(args)
        if backend is None:
            backend = DEFAULT_BACKEND
            if tensorflow_runs_here(config, settings):
                quiet_tensorflow_start()
        run_experiment(config, results_dir, settings, bus, checkpoint, backend, on_ready=ready)
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
    print(f"Results: {results_dir}", file=sys.stderr)
    print(results_dir)
    return 0


def tensorflow_runs_here(config: ExperimentConfig, settings: RunSettings) -> bool:
    """Whether this process will build Keras models, so that TensorFlow is best started quietly now.

    It does when it evaluates in-process (no Ray workers) or extracts features with a Keras backbone; with
    Ray workers and the `pixels` backbone (the demo) or `features:` sources it never loads TensorFlow,
    which would cost it ~0.6 GB of memory and seconds of start-up for nothing.

    Args:
        config: the experiment.
        settings: its run settings (the worker count).

    Returns:
        True when TensorFlow will run in this process.

    """
    from evoprune.workers.backbones import PIXELS

    if settings.workers == 0:
        return True
    sources = [config.dataset.source, *(ood.source for ood in config.ood)]
    extracts = any(not source.startswith("features:") for source in sources)
    return extracts and config.backbone.name.lower() != PIXELS


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
        from evoprune.shared.events import EvaluationFinished, ExperimentSucceeded, FrontChanged

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
        elif isinstance(event, ExperimentSucceeded):
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
