"""An experiment's results directory: its identity, and whether it may be run or resumed."""

from __future__ import annotations

import hashlib
import json

import yaml

from evoprune.coordinator.results.checkpoint import Checkpoint, CheckpointError, previous_path
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.shared.config import ConfigError, ExperimentConfig, parse_config
from evoprune.shared.storage import StoragePath


class ExperimentError(Exception):
    """A problem the user can fix (a results directory in the wrong state); the message says how."""


def experiment_fingerprint(config: ExperimentConfig) -> str:
    """Hash the whole resolved config: two directories with the same one hold the same experiment.

    Fields added since directories were first written count only off their defaults
    (`ExperimentConfig.stable_dump`), so an older directory keeps its fingerprint and still resumes.
    """
    text = json.dumps(config.stable_dump(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def check_new_results_dir(results_dir: StoragePath, config: ExperimentConfig) -> None:
    """Refuses a directory that `evoprune run` must not write into.

    Args:
        results_dir: where the experiment would write.
        config: the experiment to run.

    Raises:
        ExperimentError: the directory holds anything else; nothing is touched.

    """
    if not results_dir.exists():
        return
    if not results_dir.is_dir():
        raise ExperimentError(f"{results_dir} exists and is not a directory; choose another --out.")
    if not any(results_dir.iterdir()):
        return
    layout = ResultsLayout(results_dir)
    if not layout.config.exists() and not layout.checkpoint.exists():
        raise ExperimentError(
            f"{results_dir} is not empty and is not an evoprune results directory; "
            "choose an empty or new directory with --out."
        )
    checkpoint = Checkpoint.read_if_present(layout.checkpoint)
    if checkpoint is None or checkpoint.fingerprint != experiment_fingerprint(config):
        raise ExperimentError(
            f"{results_dir} belongs to another experiment (its config.yaml differs from this one); "
            "nothing was overwritten. Choose another --out."
        )
    if checkpoint.finished:
        raise ExperimentError(
            f"{results_dir} already holds the finished results of this experiment; nothing was overwritten. "
            "Choose another --out to run it again."
        )
    raise ExperimentError(
        f"{results_dir} holds an unfinished run of this experiment; continue it with "
        f"`evoprune resume {results_dir}` or choose another --out."
    )


def load_resumable(results_dir: StoragePath) -> tuple[ExperimentConfig, Checkpoint]:
    """Read the config and checkpoint of an interrupted experiment (`evoprune resume`).

    Args:
        results_dir: the results directory given to `evoprune resume`.

    Returns:
        (config, checkpoint), the checkpoint checked against the config.

    Raises:
        ExperimentError: missing, finished, or corrupt; nothing is touched.

    """
    layout = ResultsLayout(results_dir)
    if not results_dir.is_dir():
        raise ExperimentError(
            f"{results_dir} is not a directory; give the results directory of an experiment."
        )
    try:
        config = parse_config(yaml.safe_load(layout.config.read_text()), str(layout.config))
    except FileNotFoundError:
        raise ExperimentError(
            f"{results_dir} has no config.yaml: it is not an evoprune results directory."
        ) from None
    except (OSError, yaml.YAMLError, ConfigError) as error:
        raise ExperimentError(
            f"{results_dir} is corrupt: its config.yaml cannot be read ({error}); restore the config.yaml "
            "the experiment was started with, or run the experiment again into a new directory (--out)."
        ) from None
    try:
        checkpoint = Checkpoint.read_or_previous(layout.checkpoint)
    except CheckpointError as error:
        raise ExperimentError(f"{results_dir} is corrupt and cannot be resumed: {error}.") from None
    return config, resumable(results_dir, config, checkpoint, config_source=layout.config.name)


def resumable(
    results_dir: StoragePath,
    config: ExperimentConfig,
    checkpoint: Checkpoint,
    *,
    config_source: str = "the experiment's config",
) -> Checkpoint:
    """Check that a checkpoint continues this config's experiment and has something left to do.

    Args:
        results_dir: the directory it was read from (named in the messages).
        config: the experiment to resume.
        checkpoint: its checkpoint, read once by the caller.
        config_source: where `config` came from (named in the messages).

    Returns:
        The same checkpoint, to pass on to `run_experiment`.

    Raises:
        ExperimentError: another experiment's checkpoint, or a finished one.

    """
    fingerprint = experiment_fingerprint(config)
    if checkpoint.fingerprint != fingerprint:
        # the checkpoint vouches for itself (its sha256), so it is the config that differs
        raise ExperimentError(
            f"{results_dir} cannot be resumed: {config_source} is not the config the experiment was started "
            f"with (fingerprint {fingerprint}; the checkpoint's is {checkpoint.fingerprint}), so it was "
            f"changed or damaged since. Restore the original {config_source}, or run the changed config "
            "into a new directory (--out)."
        )
    if checkpoint.finished:
        raise ExperimentError(f"{results_dir} is already finished; there is nothing to resume.")
    return checkpoint


def existing_checkpoint(results_dir: StoragePath) -> Checkpoint | None:
    """The checkpoint a restarted service runner finds: None when it never wrote one.

    Args:
        results_dir: the experiment's results directory.

    Returns:
        The checkpoint (the previous one when the latest is damaged, see `Checkpoint.read_or_previous`);
        None when there is none (the experiment starts afresh, as before its first checkpoint).

    Raises:
        ExperimentError: neither the checkpoint nor the previous one can be read; the message says what
            to do.

    """
    path = ResultsLayout(results_dir).checkpoint
    if not path.exists() and not previous_path(path).exists():
        return None
    try:
        return Checkpoint.read_or_previous(path)
    except CheckpointError as error:
        raise ExperimentError(f"{results_dir} is corrupt and cannot be resumed: {error}.") from None
