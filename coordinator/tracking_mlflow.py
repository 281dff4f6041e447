"""The MLflow side of tracking: an experiment's parent run, its child runs, their metrics and artifacts."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from evoprune.coordinator.results.fronts import AGGREGATE_RUN
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.results.summary import FrontSummary, Summary
from evoprune.shared.atomic_files import write_json_atomic
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.storage import StoragePath

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

# MLflow's own limits (mlflow.utils.validation): longer param values are refused by older servers
MAX_PARAM_VALUE_CHARS = 6000
MAX_KEY_CHARS = 250
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
# MLflow's client retries a refused connection 7 times with exponential backoff (minutes) and waits 120 s
# for an answer; tracking retries on its own schedule instead, so a call to a server that is down fails at
# once. It also prints each run's address on stdout, where `evoprune run` prints only the results
# directory. A value the user exported is kept.
CLIENT_ENVIRONMENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
# what a parent run holds at the end, besides the plots (every PNG at the top of the results directory)
ARTIFACT_FILES = ("config.yaml", "summary.json", "front.parquet", "evaluations.parquet")
RECORD_VERSION = 1


class TrackingRejectedError(Exception):
    """The server answered that a request can never succeed (4xx): retrying it would not help."""


@dataclass(frozen=True)
class StepPoint:
    """The metrics of one run (AGGREGATE_RUN: the parent) after a search step.

    `step` is the evaluations behind them: the run's own, or all runs' for the parent.
    """

    run: int
    step: int
    metrics: dict[str, float]
    timestamp_ms: int


class TrackingRecord(TypedDict):
    """state/tracking.json: the MLflow runs of the experiment, on which server."""

    version: int
    tracking_uri: str
    experiment_id: str | None
    parent_run_id: str | None
    child_run_ids: dict[str, str]  # run index (as text: a JSON key) -> MLflow run id


@dataclass
class _Runs:
    """Which MLflow runs this experiment reports to (state/tracking.json), and what they already hold."""

    tracking_uri: str
    experiment_id: str | None = None
    parent: str | None = None
    children: dict[int, str] = field(default_factory=dict)
    # the last step each run (AGGREGATE_RUN: the parent) has on the server: a resume sends only later ones
    logged_step: dict[int, int] = field(default_factory=dict)
    ended: set[int] = field(default_factory=set)

    def to_dict(self) -> TrackingRecord:
        return {
            "version": RECORD_VERSION,
            "tracking_uri": self.tracking_uri,
            "experiment_id": self.experiment_id,
            "parent_run_id": self.parent,
            "child_run_ids": {str(run): run_id for run, run_id in sorted(self.children.items())},
        }


def config_params(config: ExperimentConfig) -> dict[str, str]:
    """The resolved config as MLflow params: dotted keys, values as JSON text, cut to MLflow's limits.

    The tracking section is left out (it says where the params go, not what the experiment is).

    Args:
        config: the experiment.

    Returns:
        key -> value, e.g. "search.population_size" -> "30", "ood.0.source" -> "sklearn:sample_images".

    """
    params: dict[str, str] = {}

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for name, item in value.items():
                walk(item, f"{key}.{name}" if key else str(name))
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for index, item in enumerate(value):
                walk(item, f"{key}.{index}")
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            params[key[:MAX_KEY_CHARS]] = text[:MAX_PARAM_VALUE_CHARS]

    walk(config.model_dump(mode="json", exclude={"tracking"}), "")
    return params


def _rejected(error: Exception) -> bool:
    """Whether MLflow's answer is final: a 4xx other than a timeout or rate limit."""
    from mlflow.exceptions import MlflowException

    if not isinstance(error, MlflowException):
        return False
    status = error.get_http_status_code()
    return 400 <= status < 500 and status not in (408, 429)


class MlflowSession:
    """Opens (or reopens, on resume) an experiment's MLflow runs and logs to them; every call may raise.

    Each method is safe to call again after it raised: what succeeded is remembered, so a retry does only
    what is left. Used by one thread at a time (the tracker's sender).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_name: str,
        config: ExperimentConfig,
        results_dir: StoragePath,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.config = config
        self.layout = ResultsLayout(results_dir)
        self._runs = _Runs(tracking_uri)
        self._client: MlflowClient | None = None
        self._resumed = self._read_record()

    @property
    def opened(self) -> bool:
        """Whether every run exists on the server."""
        return self._runs.parent is not None and len(self._runs.children) == self.config.search.runs

    @property
    def parent_run_id(self) -> str | None:
        """The experiment's run (None until it is created)."""
        return self._runs.parent

    def _read_record(self) -> bool:
        path = self.layout.tracking
        if not path.exists():
            return False
        try:
            data = json.loads(path.read_text())
            if data.get("tracking_uri") != self.tracking_uri:
                log.info(
                    "%s names runs on %s, not %s: new runs are started",
                    path,
                    data["tracking_uri"],
                    self.tracking_uri,
                )
                return False
            self._runs.experiment_id = data["experiment_id"]
            self._runs.parent = data["parent_run_id"]
            self._runs.children = {int(run): run_id for run, run_id in data["child_run_ids"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            log.warning("%s cannot be read (%s): the experiment is tracked in new MLflow runs", path, error)
            self._runs = _Runs(self.tracking_uri)
            return False
        return True

    def _write_record(self) -> None:
        write_json_atomic(self.layout.tracking, self._runs.to_dict(), durable=False)

    def client(self) -> MlflowClient:
        """The MLflow client of this session's server (MLflow is imported here, on first use)."""
        if self._client is None:
            for name, value in CLIENT_ENVIRONMENT_DEFAULTS.items():
                os.environ.setdefault(name, value)
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def call(self, action: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one MLflow call; a final refusal becomes TrackingRejectedError, anything else propagates."""
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if _rejected(error):
                raise TrackingRejectedError(f"{action}: {error}") from error
            raise

    # ---- runs -----------------------------------------------------------------------------------------

    def open(self) -> None:
        """Create the MLflow runs, or take up those state/tracking.json names (a resume); idempotent."""
        if self._resumed:
            self._reopen(self.client())
            self._resumed = False
        if self.opened:
            return
        client = self.client()
        runs = self._runs
        if runs.experiment_id is None:
            runs.experiment_id = self._experiment_id(client)
        if runs.parent is None:
            parent = self.call(
                "create the experiment's run",
                client.create_run,
                runs.experiment_id,
                run_name=self.config.name,
                tags={"evoprune.results_dir": str(self.layout.root), "evoprune.kind": "experiment"},
            )
            self._log_params(parent.info.run_id, config_params(self.config))
            runs.parent = parent.info.run_id
            self._write_record()
        search = self.config.search
        for run in range(search.runs):
            if run in runs.children:
                continue
            child = self.call(
                f"create the run of execution {run}",
                client.create_run,
                runs.experiment_id,
                run_name=f"{self.config.name} run {run}",
                tags={"mlflow.parentRunId": runs.parent, "evoprune.kind": "run", "evoprune.run": str(run)},
            )
            self._log_params(child.info.run_id, {"run": str(run), "seed": str(search.seed + run)})
            runs.children[run] = child.info.run_id
            self._write_record()

    def _experiment_id(self, client: MlflowClient) -> str:
        experiment = self.call("find the experiment", client.get_experiment_by_name, self.experiment_name)
        if experiment is not None:
            return str(experiment.experiment_id)
        try:
            return str(client.create_experiment(self.experiment_name))
        except Exception as error:
            # another process created it meanwhile
            experiment = client.get_experiment_by_name(self.experiment_name)
            if experiment is None:
                if _rejected(error):
                    raise TrackingRejectedError(
                        f"create experiment {self.experiment_name!r}: {error}"
                    ) from error
                raise
            return str(experiment.experiment_id)

    def _reopen(self, client: MlflowClient) -> None:
        """Continue the recorded runs: running again, and told which steps they already hold."""
        from mlflow.entities import RunStatus

        runs = self._runs
        assert runs.parent is not None  # a record always names its parent run
        recorded = {AGGREGATE_RUN: runs.parent, **runs.children}
        for run, run_id in recorded.items():
            try:
                info = client.get_run(run_id).info
            except Exception as error:
                if not _rejected(error):
                    raise
                # deleted on the server (or never there): this run and its history start anew
                log.warning("MLflow run %s is gone (%s): a new one is started", run_id, error)
                if run == AGGREGATE_RUN:
                    self._runs = _Runs(self.tracking_uri, experiment_id=None)
                    return
                del runs.children[run]
                continue
            history = client.get_metric_history(run_id, "hypervolume")
            runs.logged_step[run] = max((metric.step for metric in history), default=-1)
            if info.status == RunStatus.to_string(RunStatus.FINISHED) and run != AGGREGATE_RUN:
                runs.ended.add(run)  # this execution had finished before the interruption
            else:
                client.update_run(run_id, status=RunStatus.to_string(RunStatus.RUNNING))

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        client = self.client()
        for start in range(0, len(items), PARAMS_PER_BATCH):
            self.call("log params", client.log_batch, run_id, params=items[start : start + PARAMS_PER_BATCH])

    # ---- metrics and the end --------------------------------------------------------------------------

    def _run_id(self, run: int) -> str:
        run_id = self._runs.parent if run == AGGREGATE_RUN else self._runs.children[run]
        assert run_id is not None
        return run_id

    def log_points(self, points: list[StepPoint]) -> None:
        """Log step metrics, leaving out the steps a run already holds (sent before a resume).

        Args:
            points: in the order they were recorded.

        """
        from mlflow.entities import Metric

        by_run: dict[int, list[Metric]] = {}
        newest: dict[int, int] = {}
        for point in points:
            if point.step <= self._runs.logged_step.get(point.run, -1):
                continue
            metrics = by_run.setdefault(point.run, [])
            metrics.extend(Metric(k, v, point.timestamp_ms, point.step) for k, v in point.metrics.items())
            newest[point.run] = max(newest.get(point.run, -1), point.step)
        client = self.client()
        for run, metrics in by_run.items():
            for start in range(0, len(metrics), METRICS_PER_BATCH):
                chunk = metrics[start : start + METRICS_PER_BATCH]
                self.call("log metrics", client.log_batch, self._run_id(run), metrics=chunk)
            self._runs.logged_step[run] = newest[run]

    def end_run(self, run: int, status: str) -> None:
        """Mark one execution's run as ended (its budget is spent); idempotent."""
        if run in self._runs.ended:
            return
        self.call("end a run", self.client().set_terminated, self._run_id(run), status=status)
        self._runs.ended.add(run)

    def finish(self, status: str) -> None:
        """The end of the experiment: summary metrics, the results as artifacts, every run ended.

        Args:
            status: MLflow's status for the runs still running (FINISHED, KILLED or FAILED).

        """
        summary = self._summary()
        if summary is not None:
            self._log_summary(summary)
        self._log_artifacts()
        for run in sorted(self._runs.children):
            self.end_run(run, status)
        self.call(
            "end the experiment's run",
            self.client().set_terminated,
            self._run_id(AGGREGATE_RUN),
            status=status,
        )

    def _summary(self) -> Summary | None:
        if not self.layout.summary.exists():
            return None
        try:
            return Summary.read(self.layout.summary)
        except (OSError, ValueError) as error:
            log.warning("summary.json is not logged to MLflow: %s", error)
            return None

    def _log_summary(self, summary: Summary) -> None:
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)

        def metrics(part: FrontSummary, extra: dict[str, float]) -> list[Metric]:
            values = {**part.to_dict(), **extra}
            return [
                Metric(f"final.{key}", float(value), now_ms, 0)
                for key, value in values.items()
                if isinstance(value, int | float) and not isinstance(value, bool)
            ]

        client = self.client()
        parent = metrics(summary.aggregate, {"wall_time_s": summary.wall_time_s})
        self.call("log the summary", client.log_batch, self._run_id(AGGREGATE_RUN), metrics=parent)
        for run in summary.runs:
            if run.run in self._runs.children:
                self.call(
                    "log a run's summary",
                    client.log_batch,
                    self._run_id(run.run),
                    metrics=metrics(run.front, {}),
                )

    def _log_artifacts(self) -> None:
        root = self.layout.root
        names = [name for name in ARTIFACT_FILES if (root / name).exists()]
        names += sorted(path.name for path in root.iterdir() if path.name.endswith(".png"))
        if not names:
            return
        # the results directory may be on object storage: the files travel through a local folder
        with tempfile.TemporaryDirectory(prefix="evoprune-mlflow-") as folder:
            for name in names:
                Path(folder, name).write_bytes((root / name).read_bytes())
            self.call("log the results", self.client().log_artifacts, self._run_id(AGGREGATE_RUN), folder)
