"""The service's export job: `evoprune export` of a member or an ensemble, as a kind of the job family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

from evoprune.coordinator.export import ExportError, checked_formats, choose, export_name
from evoprune.coordinator.export_ensemble import DEFAULT_COMBINE, choose_ensemble, ensemble_name
from evoprune.coordinator.results.fronts import AGGREGATE_RUN, DEFAULT_KIND
from evoprune.coordinator.service.actors import export_actor_name
from evoprune.coordinator.service.jobs import JobKind, JobSpec, JobState, JobStatus
from evoprune.coordinator.service.jobs_requests import current_job, request_job
from evoprune.coordinator.service.launcher import Launcher
from evoprune.shared.storage import storage_path
from evoprune.shared.store import ExperimentRecord
from evoprune.workers.export.formats import KERAS


class ExportInvalidError(Exception):
    """The request names no exportable member; `field` is the option at fault."""

    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


class SingleOptions(TypedDict):
    """A one-member export's options, as `coordinator.export.export_model` takes them."""

    mask: str | None
    rule: str | None
    min_accuracy: float | None
    run: int
    kind: str
    formats: tuple[str, ...]
    quantize: str | None


class EnsembleOptions(TypedDict):
    """An ensemble export's options, as `coordinator.export_ensemble.export_ensemble` takes them."""

    window: str | None
    masks: list[str] | None
    combine: str
    kind: str
    formats: tuple[str, ...]
    quantize: str | None


@dataclass(frozen=True)
class ExportRequest:
    """The options of one export, as `evoprune export` takes them."""

    mask: str | None = None
    rule: str | None = None
    min_accuracy: float | None = None
    run: int = AGGREGATE_RUN
    kind: str = DEFAULT_KIND
    formats: tuple[str, ...] = (KERAS,)  # the files to write (`evoprune export --format`)
    quantize: str | None = None  # the TFLite file's (`--quantize`)
    ensemble: str | None = None  # a percentile window LOWER-UPPER (`--ensemble`), instead of mask or rule
    ensemble_masks: tuple[str, ...] | None = None  # the members (`--ensemble-masks`)
    combine: str = DEFAULT_COMBINE  # how an ensemble combines its members (`--combine`)

    @property
    def is_ensemble(self) -> bool:
        """Whether the request is for an ensemble rather than one member."""
        return self.ensemble is not None or self.ensemble_masks is not None

    def single(self) -> SingleOptions:
        """The options of a one-member export."""
        return SingleOptions(
            mask=self.mask,
            rule=self.rule,
            min_accuracy=self.min_accuracy,
            run=self.run,
            kind=self.kind,
            formats=self.formats,
            quantize=self.quantize,
        )

    def of_ensemble(self) -> EnsembleOptions:
        """The options of an ensemble export."""
        return EnsembleOptions(
            window=self.ensemble,
            masks=None if self.ensemble_masks is None else list(self.ensemble_masks),
            combine=self.combine,
            kind=self.kind,
            formats=self.formats,
            quantize=self.quantize,
        )


@dataclass(frozen=True)
class ExportState(JobState):
    """Where the latest export of an experiment stands: its status file (export-status.json)."""

    name: str | None = None  # the folder under exports/
    options: dict[str, Any] | None = None  # the request's options (`ExportRequest`'s fields)
    objectives: dict[str, float] | None = None  # the exported member's, once succeeded
    mask: str | None = None  # the exported member's, once succeeded


@dataclass(frozen=True)
class ExportSpec(JobSpec):
    """What one export needs, picklable: the experiment, its results, and the pick (or the mask)."""

    name: str  # the folder under exports/, chosen when the request was checked
    mask: str | None = None
    rule: str | None = None
    min_accuracy: float | None = None
    run: int = AGGREGATE_RUN
    kind: str = DEFAULT_KIND  # the front to pick from, not the job's kind (that is `job_kind`)
    formats: tuple[str, ...] = (KERAS,)
    quantize: str | None = None
    ensemble: str | None = None
    ensemble_masks: tuple[str, ...] | None = None
    combine: str = DEFAULT_COMBINE

    def request(self) -> ExportRequest:
        """The request's options, as `evoprune export` takes them."""
        return ExportRequest(
            self.mask,
            self.rule,
            self.min_accuracy,
            self.run,
            self.kind,
            self.formats,
            self.quantize,
            self.ensemble,
            self.ensemble_masks,
            self.combine,
        )

    def request_state(self) -> ExportState:
        # the options as the status file holds them (JSON has lists), so a state read back equals the one
        # written; a one-member export's options stay as they were before ensembles existed
        options = {**asdict(self.request()), "formats": list(self.formats)}
        if self.request().is_ensemble:
            options["ensemble_masks"] = None if self.ensemble_masks is None else list(self.ensemble_masks)
        else:
            for key in ("ensemble", "ensemble_masks", "combine"):
                del options[key]
        return ExportState(JobStatus.NONE, name=self.name, options=options)


class ExportOutcome(TypedDict):
    """What a finished export job reports in its status file."""

    objectives: dict[str, float] | None  # the exported member's (an ensemble's: its accuracy and AUROC)
    mask: str | None  # the exported member's hex; None for an ensemble


def export(spec: ExportSpec, log: Callable[[str], None]) -> ExportOutcome:
    """Export one front member (or an ensemble) into exports/NAME; the outcome: its objectives and mask."""
    # imported here: building the model pulls in TensorFlow, which only the actor's process should load
    from evoprune.coordinator.export import export_model
    from evoprune.coordinator.export_ensemble import export_ensemble

    request = spec.request()
    if request.is_ensemble:
        ensemble = export_ensemble(storage_path(spec.results_dir), **request.of_ensemble(), log=log)
        # an ensemble has members, not one mask: its objectives are the ensemble's accuracy and AUROC
        accuracy, auroc = ensemble["objectives"]["accuracy"], ensemble["objectives"]["auroc"]
        scores = {"accuracy": accuracy} if auroc is None else {"accuracy": accuracy, "auroc": auroc}
        return ExportOutcome(objectives=scores, mask=None)
    written = export_model(storage_path(spec.results_dir), **request.single(), log=log)
    return ExportOutcome(objectives=written["objectives"], mask=written["mask"])


EXPORT = JobKind[ExportSpec, ExportState](
    noun="export",
    a_job="an export",
    participle="exported",
    state_type=ExportState,
    status_path=lambda layout: layout.export_status,
    actor_name=export_actor_name,
    work=export,
)
ExportSpec.job_kind = EXPORT


def current_export(record: ExperimentRecord, launcher: Launcher) -> ExportState:
    """Where the latest export of an experiment stands (the launcher says whether its actor still exists)."""
    return current_job(EXPORT, record, launcher)


def request_export(record: ExperimentRecord, launcher: Launcher, request: ExportRequest) -> ExportState:
    """Check an export request against the experiment's results, then start it in a detached Ray actor.

    The member (or the ensemble's members) is chosen here, from the results files (no TensorFlow), so
    that a bad request is answered at once; the actor re-trains it and writes exports/NAME/model.keras,
    the other formats asked for and export.json.

    Args:
        record: the experiment.
        launcher: starts the export actor.
        request: the pick (or the mask).

    Returns:
        The export's state just after the request.

    Raises:
        JobRefusedError: the experiment has not succeeded, or one of its exports is running.
        ExportInvalidError: no such run or kind, a malformed or unknown mask, no member qualifies, an
            unknown format, a quantisation without tflite, a format whose packages the server lacks.
        JobUnavailableError: the results directory cannot be written, or Ray refused the actor.

    """

    def prepare() -> ExportSpec:
        results_dir = storage_path(record.results_dir)  # a local path, or s3:// on object storage
        options = asdict(request)
        try:
            # refused here, before the actor starts: an unknown format, or one this server cannot write
            options["formats"] = checked_formats(options["formats"], options["quantize"])
            if request.is_ensemble:
                members = request.of_ensemble()
                _, ensemble = choose_ensemble(
                    results_dir,
                    window=members["window"],
                    masks=members["masks"],
                    combine=members["combine"],
                    kind=members["kind"],
                )
                name = ensemble_name(ensemble)
            else:
                _, choice = choose(
                    results_dir,
                    mask=request.mask,
                    rule=request.rule,
                    min_accuracy=request.min_accuracy,
                    run=request.run,
                    kind=request.kind,
                )
                name = export_name(choice)
        except ExportError as error:
            raise ExportInvalidError(" ".join(str(error).split()), error.field) from None
        return ExportSpec(record.id, str(results_dir), name, **options)

    return request_job(EXPORT, record, launcher, prepare)
