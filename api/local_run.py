"""One experiment run in this process with a progress bar: `evoprune run|resume` and `evoprune.run` alike."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

# Imported by the command line's `run` only when it runs: the assembly, Ray and the search load here lazily.
if TYPE_CHECKING:
    from evoprune.coordinator.assembly import Backend, RunSettings
    from evoprune.coordinator.experiment import Experiment
    from evoprune.shared.config import ExperimentConfig
    from evoprune.shared.evaluation_row import EvaluationRow
    from evoprune.shared.storage import StoragePath

RESULTS_ROOT = Path("results")


@dataclass(frozen=True)
class LocalRun:
    """How a run in this process goes: its settings, and what it shows on the terminal besides the bar."""

    settings: RunSettings
    # where features and evaluations come from; None: the real ones
    backend: Backend | None = None
    # print the Ray dashboard's address on stderr once the workers are up (the command line does)
    announce_dashboard: bool = False
    # start TensorFlow without its start-up chatter when this process will train (the command line does; a
    # notebook keeps TensorFlow's own logging)
    quiet_tensorflow: bool = False


def new_results_dir(config: ExperimentConfig, out: str | Path | None) -> StoragePath:
    """The results directory of a new experiment, checked to be free for it.

    Args:
        config: the experiment.
        out: the directory asked for (a local path, or an s3:// or gs:// prefix); None:
            results/NAME-TIMESTAMP under the working directory.

    Returns:
        The directory.

    Raises:
        ExperimentError: it holds something other than this experiment's unstarted results, or names
            object storage that cannot be reached.

    """
    from evoprune.coordinator.results.directory import check_new_results_dir

    stamp = time.strftime("%Y%m%d-%H%M%S")
    results_dir = results_location(out) if out is not None else RESULTS_ROOT / f"{config.name}-{stamp}"
    check_new_results_dir(results_dir, config)
    return results_dir


def results_location(value: str | Path) -> StoragePath:
    """A results directory given by its user: a local path, or an s3:// or gs:// prefix.

    Args:
        value: the path or URI.

    Returns:
        The directory.

    Raises:
        ExperimentError: an object-storage URI without a bucket, or one whose store cannot be set up.

    """
    from evoprune.coordinator.results.directory import ExperimentError
    from evoprune.shared.storage import storage_path

    try:
        return storage_path(value)
    except ValueError as error:
        raise ExperimentError(f"{error}; check the URI and the store's credentials") from None


def start_locally(config: ExperimentConfig, results_dir: StoragePath, run: LocalRun) -> None:
    """Run a new experiment to its end in this process (Ray workers when the settings ask for them).

    Args:
        config: the resolved experiment.
        results_dir: from `new_results_dir`.
        run: its settings and terminal output.

    Raises:
        ConfigError: the environment's settings are invalid.
        ExperimentError: the config, features or results directory do not allow it to run.
        EvaluationError: evaluations failed beyond what the evaluator retries (it is checkpointed).
        KeyboardInterrupt: interrupted (it is checkpointed).

    """
    _run(config, results_dir, run)


def resume_locally(results_dir: StoragePath, run: LocalRun) -> None:
    """Continue an interrupted experiment from its checkpoint to its end; nothing is trained again.

    Args:
        results_dir: the experiment's results directory.
        run: its settings and terminal output.

    Raises:
        ExperimentError: the directory holds no resumable experiment, or it cannot run.
        EvaluationError: evaluations failed beyond what the evaluator retries (it is checkpointed).
        KeyboardInterrupt: interrupted (it is checkpointed).

    """
    _run(None, results_dir, run)


def _run(config: ExperimentConfig | None, results_dir: StoragePath, run: LocalRun) -> None:
    """A new experiment (config given) or a resumed one (None: the directory's), progress on the terminal."""
    from evoprune.api._progress import ProgressBar
    from evoprune.api._quiet_tensorflow import quiet_tensorflow_start
    from evoprune.coordinator.assembly import DEFAULT_BACKEND, run_experiment
    from evoprune.coordinator.results.directory import load_resumable
    from evoprune.shared.events import EventBus

    # the checkpoint goes from the directory to the assembly untouched: its form is theirs alone
    if config is None:
        config, checkpoint = load_resumable(results_dir)
    else:
        checkpoint = None
    bus = EventBus()
    progress: ProgressBar | None = None

    def ready(experiment: Experiment, restored: list[EvaluationRow]) -> None:
        nonlocal progress
        url = experiment.evaluator.describe().get("dashboard_url") if run.announce_dashboard else None
        if url:
            print(f"Ray dashboard: {url}", file=sys.stderr)
        progress = ProgressBar(experiment.total_evaluations, experiment.evaluations_done)
        bus.subscribe(progress)

    backend = run.backend
    if backend is None:
        backend = DEFAULT_BACKEND
        if run.quiet_tensorflow and tensorflow_runs_here(config, run.settings):
            quiet_tensorflow_start()
    try:
        run_experiment(config, results_dir, run.settings, bus, checkpoint, backend, on_ready=ready)
    finally:
        if progress is not None:
            progress.close()


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
    from evoprune.workers.features.backbones import PIXELS

    if settings.workers == 0:
        return True
    sources = [config.dataset.source, *(ood.source for ood in config.ood)]
    extracts = any(not source.startswith("features:") for source in sources)
    return extracts and config.backbone.name.lower() != PIXELS
