"""The Python way in: run an experiment or open its results directory, as one object for notebooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evoprune.coordinator.analysis.inputs import AnalysisError, ResultsInput, read_results
from evoprune.coordinator.results.fronts import AGGREGATE_RUN, DEFAULT_KIND, FrontKind, FrontRecord
from evoprune.coordinator.results.picks import front_rows, has_kinds, pick, rows_of_kind
from evoprune.shared.config import ExperimentConfig, demo_config_path, load_config, parse_config
from evoprune.shared.storage import ObjectPath, StoragePath, storage_path

if TYPE_CHECKING:
    import pandas as pd

    from evoprune.coordinator.export import ExportReport

ConfigInput = ExperimentConfig | Mapping[str, Any] | str | Path | None


class RunFailedError(RuntimeError):
    """An experiment started from Python did not finish: its evaluations failed (the message says why)."""


class ExperimentResult:
    """A finished experiment's results directory, read once: tables as pandas DataFrames, picks, exports.

    Attributes:
        path: the results directory.
        config: the fully resolved experiment config.
        summary: summary.json as a dict.

    """

    def __init__(self, inputs: ResultsInput) -> None:
        self._inputs = inputs
        self.path: StoragePath = inputs.results_dir
        self.config: ExperimentConfig = inputs.config
        self.summary: dict[str, Any] = inputs.summary

    def __repr__(self) -> str:
        return f"ExperimentResult({str(self.path)!r}, experiment={self.config.name!r})"

    @property
    def runs(self) -> pd.DataFrame:
        """One row per run: its seed, hypervolume, evaluation counts (summary.json's `runs`)."""
        import pandas as pd

        return pd.DataFrame.from_records(self.summary.get("runs", []))

    @property
    def evaluations(self) -> pd.DataFrame:
        """evaluations.parquet: one row per evaluation (run, step, mask, objectives, cost)."""
        import pandas as pd

        return pd.DataFrame.from_records(self._inputs.evaluations)

    def front(self, kind: str = DEFAULT_KIND, run: int | None = None) -> pd.DataFrame:
        """The Pareto front of one kind, best accuracy first.

        Args:
            kind: `population` (the paper's front: non-dominated members of the final population) or
                `archive` (non-dominated over all evaluations). Results written before fronts had kinds
                hold only the archive front, which is then returned for either kind.
            run: one run's front, -1 for the aggregated front of all runs, None for every run and the
                aggregate (told apart by the `run` column).

        Returns:
            The front's rows (run, mask, mask_length, objectives).

        """
        import pandas as pd

        if run is None:
            rows = rows_of_kind(self._inputs.every_front_rows, kind)
        else:
            rows = front_rows(self._inputs.every_front_rows, run=run, kind=kind)
        frame = pd.DataFrame.from_records(rows)
        order = ["run", "accuracy", "active_fraction", "auroc"]
        return frame.sort_values(order, ascending=[True, False, True, False], ignore_index=True)

    @property
    def has_front_kinds(self) -> bool:
        """Whether front.parquet tells the population front from the archive front."""
        return has_kinds(self._inputs.every_front_rows)

    def pick(
        self,
        rule: str = "best-accuracy",
        *,
        min_accuracy: float | None = None,
        run: int = AGGREGATE_RUN,
        kind: str = DEFAULT_KIND,
    ) -> FrontRecord:
        """One front member by a rule (evoprune.coordinator.results.picks).

        Args:
            rule: `best-accuracy`, `knee` (Das 1999: farthest beyond the extreme-point hyperplane) or
                `smallest` (fewest active inputs with accuracy >= `min_accuracy`).
            min_accuracy: the floor of `smallest`.
            run: the run whose front to pick from; -1 the aggregated front.
            kind: `population` or `archive`.

        Returns:
            The chosen front row (mask, objectives).

        Raises:
            PickError: an unknown rule, run or kind, or no member qualifies.

        """
        rows = front_rows(self._inputs.every_front_rows, run=run, kind=kind)
        return pick(rows, rule, min_accuracy=min_accuracy).record()

    def export(
        self,
        out: str | Path | None = None,
        *,
        pick: str | None = None,
        mask: str | None = None,
        min_accuracy: float | None = None,
        run: int = AGGREGATE_RUN,
        kind: str = DEFAULT_KIND,
        formats: str | Sequence[str] | None = None,
        quantize: str | None = None,
    ) -> ExportReport:
        """Write one front member as a physically smaller model, as `evoprune export` does.

        Args:
            out: the .keras file (default: <results>/exports/RULE/model.keras).
            pick: a pick rule (see `pick`); best-accuracy when neither it nor `mask` is given.
            mask: the hex of an evaluated mask.
            min_accuracy: the floor of `smallest`.
            run: the run whose front to pick from; -1 the aggregated front.
            kind: `population` or `archive`.
            formats: keras (always written), saved_model, tflite, onnx: a list or comma-separated.
            quantize: the TFLite file's post-training quantisation, float16 or int8.

        Returns:
            The report also written to export.json beside the model (its `model` is the .keras file's
            path; `formats` lists every file with its size, runtime, accuracy and AUROC).

        Raises:
            ExportError: bad input.
            ExportMismatchError: the written model does not reproduce the recorded accuracy.

        """
        from evoprune.coordinator.export import export_model

        return export_model(
            self.path,
            mask=mask,
            rule=pick if pick is not None or mask is not None else "best-accuracy",
            min_accuracy=min_accuracy,
            run=run,
            kind=kind,
            out=Path(out) if out is not None else None,
            formats=formats,
            quantize=quantize,
        )


def open_results(path: str | Path | ObjectPath) -> ExperimentResult:
    """Open the results directory of a finished experiment.

    Args:
        path: the directory `evoprune run` (or `run_experiment`) wrote: a local path, or an s3:// or gs://
            prefix (read with the store's standard credentials).

    Returns:
        Its results.

    Raises:
        AnalysisError: the directory is missing, unfinished or corrupt; the message says which.

    """
    # the archive kind reads in files from before fronts had kinds too; fronts and picks use every kind
    try:
        location = storage_path(path)
    except ValueError as error:
        raise AnalysisError(f"{error}; check the URI and the store's credentials") from None
    return ExperimentResult(read_results(location, FrontKind.ARCHIVE))


def run_experiment(
    config: ConfigInput = None,
    *,
    runs: int | None = None,
    max_evaluations: int | None = None,
    workers: int | None = 0,
    out: str | Path | None = None,
    seed: int | None = None,
) -> ExperimentResult:
    """Run an experiment end to end, as `evoprune run` does, and open its results.

    Args:
        config: a config mapping (as the YAML file holds), an ExperimentConfig, a YAML file path, or None
            for the embedded demo.
        runs: independent runs (overrides search.runs).
        max_evaluations: evaluations per run (overrides search.max_evaluations).
        workers: worker actors; 0 (default) evaluates in this process without Ray; None one per GPU.
        out: the results directory (default results/NAME-TIMESTAMP under the working directory).
        seed: the first run's seed (overrides search.seed).

    Returns:
        The finished experiment's results.

    Raises:
        ConfigError: the config or an override is invalid.
        ExperimentError: the results directory cannot be used.
        RunFailedError: the experiment stopped before the end (the message says why).

    """
    from evoprune.api.local_run import LocalRun, new_results_dir, start_locally
    from evoprune.api.settings import local_run_settings
    from evoprune.coordinator.evaluator_interface import EvaluationError

    base = _as_config(config)
    overrides = {"runs": runs, "max_evaluations": max_evaluations, "seed": seed}
    given = {key: value for key, value in overrides.items() if value is not None}
    resolved = base.with_search_overrides(
        runs=runs, max_evaluations=max_evaluations, seed=seed, origin=f"{base.name} with overrides {given}"
    )
    results_dir = new_results_dir(resolved, out)
    try:
        start_locally(resolved, results_dir, LocalRun(local_run_settings(workers, address=None)))
    except EvaluationError as error:
        raise RunFailedError(
            f"the experiment in {results_dir} did not finish: {error} "
            f"It is checkpointed; continue it with `evoprune resume {results_dir}`."
        ) from error
    return open_results(results_dir)


def _as_config(config: ConfigInput) -> ExperimentConfig:
    if isinstance(config, ExperimentConfig):
        return config
    if config is None:
        return load_config(demo_config_path())
    if isinstance(config, str | Path):
        return load_config(Path(config))
    return parse_config(dict(config), "config mapping")
