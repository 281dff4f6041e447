"""The API's public models: one schema family per resource (create, public, list)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from evoprune.api.http._input_text import storable, value_problem
from evoprune.coordinator.results.fronts import AGGREGATE_RUN
from evoprune.coordinator.results.population import population_fronts
from evoprune.coordinator.service.jobs import JobStatus
from evoprune.coordinator.service.jobs_analysis import DEFAULT_SAMPLES, DEFAULT_TOP, AnalysisState
from evoprune.coordinator.service.jobs_export import ExportState
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.storage import storage_path
from evoprune.shared.store import ExperimentRecord, FrontState
from evoprune.workers.export.formats import KERAS, ONNX, QUANTIZATIONS, TFLITE, file_name

MAX_NAME_LENGTH = 200
# the HTTP bounds of an analysis request (the command line takes any)
MAX_TOP = 50
MAX_SAMPLES = 16
# 4 hex digits per 16 mask bits: a million covers the flattened pixels of any paper dataset's images
MAX_MASK_HEX = 1 << 20
# an ensemble's members run side by side in one model; a front seldom has more than a few dozen
MAX_ENSEMBLE_MEMBERS = 256
MAX_CONFIG_YAML_CHARS = 1 << 20


class ExperimentCreate(BaseModel):
    """A new experiment: its config as a mapping (`config`) or as YAML text (`config_yaml`), not both."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="display name; default: config.name",
    )
    config: dict[str, Any] | None = Field(default=None, description="the experiment config, as in YAML")
    config_yaml: str | None = Field(
        default=None, max_length=MAX_CONFIG_YAML_CHARS, description="the experiment config as YAML text"
    )

    @field_validator("name", "config", "config_yaml")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        # refused here, or the record is stored and every later read of it (and of the list) fails
        problem = value_problem(value, str(info.field_name))
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _exactly_one_config(self) -> ExperimentCreate:
        if (self.config is None) == (self.config_yaml is None):
            raise ValueError("give exactly one of config (a mapping) or config_yaml (YAML text)")
        return self


class ExperimentCreated(BaseModel):
    """The id of a new experiment."""

    id: str


class RunPublic(BaseModel):
    """One run's progress."""

    run: int
    seed: int
    evaluations_done: int
    evaluations_total: int
    hypervolume: float
    cache_hits: int
    finished: bool


def utc_time(value: float | None) -> datetime | None:
    """A Unix time as an aware UTC datetime (None stays None)."""
    return datetime.fromtimestamp(value, tz=UTC) if value is not None else None


class ExperimentPublic(BaseModel):
    """An experiment as clients see it."""

    id: str
    name: str
    status: ExperimentStatus
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    evaluations_done: int
    evaluations_total: int
    cache_hits: int
    hypervolume: float = Field(description="of the aggregated front of all runs")
    runs: list[RunPublic]
    mask_length: int | None
    error: str | None
    results_dir: str
    config: dict[str, Any]

    @classmethod
    def of(cls, record: ExperimentRecord) -> ExperimentPublic:
        """The public view of a stored record."""
        return cls(
            id=record.id,
            # a record stored before posted text was checked may hold a lone surrogate: shown, not a 500
            name=storable(record.name),
            status=record.status,
            created_at=utc_time(record.created_at),  # type: ignore[arg-type]
            started_at=utc_time(record.started_at),
            finished_at=utc_time(record.finished_at),
            evaluations_done=record.evaluations_done,
            evaluations_total=record.evaluations_total,
            cache_hits=record.cache_hits,
            hypervolume=record.hypervolume,
            runs=[RunPublic(**vars(run)) for run in record.runs],
            mask_length=record.mask_length,
            error=record.error,
            results_dir=record.results_dir,
            config=storable(record.config),
        )


class ExperimentList(BaseModel):
    """A page of experiments, newest first."""

    experiments: list[ExperimentPublic]
    total: int


class FrontPoint(BaseModel):
    """One non-dominated mask of a run's front (run = -1: the front of all runs together)."""

    run: int
    mask: str
    accuracy: float
    active_fraction: float
    auroc: float


class FrontSummary(BaseModel):
    """One front's size and hypervolume."""

    run: int
    hypervolume: float
    evaluations: int
    size: int


class HypervolumePoint(BaseModel):
    """A front's hypervolume after a number of evaluations (of all runs)."""

    run: int = Field(default=-1, description="the run whose front it is; -1 = the aggregated front")
    evaluations: int
    hypervolume: float


def front_points(run: int, points: Sequence[Sequence[float]], masks: Sequence[str]) -> list[FrontPoint]:
    """The points of one front: its (accuracy, active_fraction, auroc) triples and their masks, in order."""
    return [
        FrontPoint(run=run, mask=mask, accuracy=point[0], active_fraction=point[1], auroc=point[2])
        for point, mask in zip(points, masks, strict=True)
    ]


class FrontPublic(BaseModel):
    """The current fronts of an experiment, of one kind, and the aggregated archive's hypervolume history."""

    experiment_id: str
    kind: Literal["population", "archive"] = Field(
        default="archive",
        description=(
            "population: each run's population's non-dominated members (the paper's fronts); archive: the "
            "non-dominated set of all evaluations"
        ),
    )
    evaluations_done: int
    hypervolume: float = Field(description="the aggregated front's (run = -1) hypervolume, of this kind")
    points: list[FrontPoint]
    runs: list[FrontSummary]
    hypervolume_history: list[HypervolumePoint] = Field(
        description="the aggregated archive front's hypervolume after each change (whatever the kind)"
    )

    @classmethod
    def of_population(
        cls, record: ExperimentRecord, history: list[tuple[int, float]], run: int | None = None
    ) -> FrontPublic:
        """The population fronts, read from the experiment's checkpoint (none before its first step)."""
        try:
            # the search section alone: a GET must not pay for validating the whole config each time
            search = ExperimentConfig.stored_search(record.config)
        except ValidationError:
            search = None  # a record from a version whose configs no longer validate: no population to read
        fronts = population_fronts(storage_path(record.results_dir), search) if search is not None else {}
        aggregate = fronts[AGGREGATE_RUN].hypervolume if AGGREGATE_RUN in fronts else 0.0
        state = FrontState(fronts={run: front.to_dict() for run, front in fronts.items()}, history=history)
        return cls.of(record, state, run).model_copy(update={"kind": "population", "hypervolume": aggregate})

    @classmethod
    def of(cls, record: ExperimentRecord, state: FrontState, run: int | None = None) -> FrontPublic:
        """The public view of stored (archive) fronts, optionally of one run only."""
        fronts = sorted(state.fronts.items())
        if run is not None:
            fronts = [(number, front) for number, front in fronts if number == run]
        return cls(
            experiment_id=record.id,
            evaluations_done=record.evaluations_done,
            hypervolume=record.hypervolume,
            points=[
                point
                for number, front in fronts
                for point in front_points(number, front["points"], front["masks"])
            ],
            runs=[
                FrontSummary(
                    run=number,
                    hypervolume=front["hypervolume"],
                    evaluations=front.get("evaluations", 0),
                    size=len(front["masks"]),
                )
                for number, front in fronts
            ],
            hypervolume_history=[
                *(
                    HypervolumePoint(evaluations=evaluations, hypervolume=value)
                    for evaluations, value in state.history
                ),
                *(
                    HypervolumePoint(run=number, evaluations=evaluations, hypervolume=value)
                    for number, points in sorted(state.run_histories.items())
                    if run in (None, number)
                    for evaluations, value in points
                ),
            ],
        )


class EvaluationPublic(BaseModel):
    """One evaluation of one mask in one run."""

    run: int
    step: int
    mask: str
    mask_length: int | None
    accuracy: float
    active_fraction: float
    auroc: float
    cached: bool
    seconds: float
    worker: str
    test_accuracy: float | None = None
    test_auroc: float | None = None


class EvaluationList(BaseModel):
    """A page of evaluations in (run, step, position) order."""

    evaluations: list[EvaluationPublic]
    total: int
    offset: int
    limit: int


class AnalysisCreate(BaseModel):
    """Options of an analysis (`evoprune analyze --top --samples`)."""

    model_config = ConfigDict(extra="forbid")

    top: int = Field(default=DEFAULT_TOP, ge=1, le=MAX_TOP, description="most important neurons to report")
    samples: int = Field(
        default=DEFAULT_SAMPLES, ge=1, le=MAX_SAMPLES, description="sample images in the heatmap grid"
    )


class AnalysisPublic(BaseModel):
    """Where the analysis of an experiment stands."""

    status: JobStatus
    error: str | None = Field(description="why the last analysis failed")
    stage: str | None = Field(description="what a running analysis is doing")
    requested_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    top: int | None
    samples: int | None

    @classmethod
    def of(cls, state: AnalysisState) -> AnalysisPublic:
        """The public view of an analysis state."""
        return cls(
            status=state.status,
            error=state.error,
            stage=state.stage if state.status == JobStatus.RUNNING else None,
            requested_at=utc_time(state.requested_at),
            started_at=utc_time(state.started_at),
            finished_at=utc_time(state.finished_at),
            top=state.top,
            samples=state.samples,
        )


MaskHex = Annotated[str, Field(min_length=1, max_length=MAX_MASK_HEX, pattern="^[0-9a-fA-F]+$")]


class ExportCreate(BaseModel):
    """Which front member (or ensemble of members) to export, and in which formats.

    As `evoprune export --mask | --pick --min-accuracy --run | --ensemble | --ensemble-masks --combine
    --kind --format --quantize`.
    """

    model_config = ConfigDict(extra="forbid")

    mask: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_MASK_HEX,
        pattern="^[0-9a-fA-F]+$",
        description="the mask to export, as hex (evaluations.parquet, front points); instead of pick",
    )
    pick: Literal["best-accuracy", "knee", "smallest"] | None = Field(
        default=None,
        description="best-accuracy (ties: fewer active); knee (Das 1999); smallest (fewest active inputs "
        "with accuracy >= min_accuracy)",
    )
    min_accuracy: float | None = Field(default=None, ge=0.0, le=1.0, description="the floor of pick smallest")
    run: int | None = Field(
        default=None, ge=-1, le=1_000_000, description="the run whose front to pick from; -1 (default) all"
    )
    kind: Literal["population", "archive"] | None = Field(
        default=None, description="the front to pick from: population (default, the paper's) or archive"
    )
    formats: list[Literal["keras", "saved_model", "tflite", "onnx"]] | None = Field(
        default=None,
        min_length=1,
        max_length=4,
        description="the files to write besides model.keras (always written): saved_model, tflite, onnx; "
        "each is reloaded with its own runtime and scored",
    )
    quantize: Literal["float16", "int8"] | None = Field(
        default=None,
        description="post-training quantisation of the TFLite file (needs tflite among formats); int8 is "
        "calibrated on training samples",
    )
    ensemble: str | None = Field(
        default=None,
        pattern=r"^\d{1,3}-\d{1,3}$",
        description="an ensemble of the aggregated front's members whose accuracy lies in this percentile "
        "window LOWER-UPPER of the front's accuracies, as the analysis builds them (e.g. 85-95): one model, "
        "the backbone once, the members' pruned heads combined; instead of mask or pick",
    )
    ensemble_masks: list[MaskHex] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_ENSEMBLE_MEMBERS,
        description="an ensemble of these evaluated masks (hex); instead of mask, pick or ensemble",
    )
    combine: Literal["mean", "vote"] | None = Field(
        default=None,
        description="how an ensemble combines its members: mean (default) averages their softmax "
        "probabilities (the analysis's softmax_accuracy); vote outputs each class's share of their votes, "
        "whose argmax is the majority vote (the analysis's accuracy)",
    )

    @model_validator(mode="after")
    def _one_choice(self) -> ExportCreate:
        chosen = [self.mask, self.pick, self.ensemble, self.ensemble_masks]
        if sum(value is not None for value in chosen) != 1:
            raise ValueError(
                "give either mask or pick, or an ensemble (ensemble or ensemble_masks): one of them"
            )
        ensemble = self.ensemble is not None or self.ensemble_masks is not None
        if self.combine is not None and not ensemble:
            raise ValueError("combine applies only to ensemble and ensemble_masks")
        if ensemble and self.run is not None:
            raise ValueError("run does not apply to an ensemble: its window is of the aggregated front")
        if self.ensemble_masks is not None and self.kind is not None:
            raise ValueError("kind chooses the front of a window; it does not apply to ensemble_masks")
        if self.pick == "smallest" and self.min_accuracy is None:
            raise ValueError("min_accuracy: pick smallest needs min_accuracy")
        if self.min_accuracy is not None and self.pick != "smallest":
            raise ValueError("min_accuracy applies only to pick smallest")
        if self.mask is not None and (self.run is not None or self.kind is not None):
            raise ValueError("run and kind choose the front to pick from; they do not apply to mask")
        if self.quantize is not None and "tflite" not in (self.formats or []):
            raise ValueError("quantize applies to the TFLite file only; add tflite to formats")
        return self


class ExportPublic(BaseModel):
    """Where the latest export of an experiment stands, and the files it wrote."""

    status: JobStatus
    error: str | None = Field(default=None, description="why the last export failed")
    stage: str | None = Field(default=None, description="what a running export is doing")
    name: str | None = Field(default=None, description="the export's folder: exports/NAME/model.keras")
    options: dict[str, Any] | None = Field(default=None, description="the request's mask or pick options")
    objectives: dict[str, float] | None = Field(default=None, description="the exported member's objectives")
    model_url: str | None = Field(default=None, description="where to GET the .keras file once succeeded")
    file_urls: dict[str, str] | None = Field(
        default=None,
        description="once succeeded, where to GET the file of each format written as one file (keras, "
        "tflite, onnx; a SavedModel is a folder, kept on the server)",
    )
    report_url: str | None = Field(default=None, description="where to GET its export.json once succeeded")
    requested_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @classmethod
    def of(cls, state: ExportState, urls: dict[str, str]) -> ExportPublic:
        """The public view of an export's state; `urls` maps the listed artifact names to their URLs."""
        stem = f"export-{state.name}"
        done = state.status == JobStatus.SUCCEEDED
        return cls(
            status=state.status,
            error=state.error,
            stage=state.stage if state.status == JobStatus.RUNNING else None,
            name=state.name,
            options=state.options,
            objectives=state.objectives if done else None,
            model_url=urls.get(f"{stem}.keras") if done else None,
            file_urls=_export_file_urls(stem, urls) if done else None,
            report_url=urls.get(f"{stem}.json") if done else None,
            requested_at=utc_time(state.requested_at),
            started_at=utc_time(state.started_at),
            finished_at=utc_time(state.finished_at),
        )


def _export_file_urls(stem: str, urls: dict[str, str]) -> dict[str, str]:
    """Format -> URL of the files of an export among the listed artifacts (export-NAME-int8.tflite, ...)."""
    candidates = [
        (name, file_name(stem, name, quantize))
        for name in (KERAS, TFLITE, ONNX)
        for quantize in ((None, *QUANTIZATIONS) if name == TFLITE else (None,))
    ]
    return {name: urls[listed] for name, listed in candidates if listed in urls}


class ArtifactPublic(BaseModel):
    """One file of an experiment that the API serves: a result, an analysis or an exported model."""

    name: str = Field(description="a plain file name, unique within the experiment")
    kind: Literal["image", "table", "json", "yaml", "model"]
    source: Literal["results", "analysis", "export"] = Field(
        description="results: written by the experiment; analysis: by its analysis; export: by an export"
    )
    media_type: str
    description: str
    size_bytes: int
    url: str = Field(description="where to GET the file (send the bearer token too)")


class ArtifactList(BaseModel):
    """An experiment's files and the state of its analysis."""

    experiment_id: str
    analysis: AnalysisPublic
    artifacts: list[ArtifactPublic]


class Health(BaseModel):
    """Whether the service and its store answer."""

    status: Literal["ok", "unavailable"]
    store: str
    store_ok: bool
    auth_required: bool
    version: str
