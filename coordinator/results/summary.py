"""summary.json of an experiment, typed: per-run and aggregated counts and hypervolumes, and how it ran."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypedDict, cast

from evoprune.shared.sealed_json import read_sealed_json, write_sealed_json
from evoprune.shared.storage import StoragePath


class FrontSummaryDocument(TypedDict, total=False):
    """A part of summary.json (`FrontSummary.to_dict`): every field, the constraint pair only where set.

    Summaries written before population fronts were kept name the archive's `hypervolume` and
    `front_size`; older ones lack the fields they predate.
    """

    hypervolume_population: float
    hypervolume_archive: float
    evaluations: int
    trained: int
    screened_out: int
    epochs_trained: float | None
    cache_hits: int
    front_size_population: int
    front_size_archive: int
    best_accuracy: float | None
    feasible: int | None
    best_feasible_accuracy: float | None
    hypervolume: float
    front_size: int


class RunSummaryDocument(FrontSummaryDocument, total=False):
    """One element of summary.json's `runs` (`RunSummary.to_dict`): run and seed, then the counts."""

    run: int
    seed: int


@dataclass(frozen=True)
class FrontSummary:
    """Counts of a run's (or all runs') evaluations and both fronts' hypervolumes and sizes."""

    hypervolume_population: float
    hypervolume_archive: float
    evaluations: int
    trained: int
    screened_out: int
    # epochs of the masks trained here (cache hits cost none); None where a row predates the column
    epochs_trained: float | None
    cache_hits: int
    front_size_population: int
    front_size_archive: int
    best_accuracy: float | None
    # with search.constraints: how many evaluations kept to them and the best accuracy among those
    feasible: int | None = None
    best_feasible_accuracy: float | None = None

    def to_dict(self) -> FrontSummaryDocument:
        """The JSON form, keys in summary.json's order (the constraint fields only where set)."""
        # derived from the fields: a field added to the dataclass reaches summary.json without a second list
        data = cast(FrontSummaryDocument, {item.name: getattr(self, item.name) for item in fields(self)})
        if self.feasible is None:
            del data["feasible"], data["best_feasible_accuracy"]
        return data

    @classmethod
    def from_dict(cls, data: FrontSummaryDocument) -> FrontSummary:
        """Read a summary part back; fields a directory predates read as 0 or None.

        Args:
            data: the part of summary.json (an element of `runs`, or `aggregate`).

        Returns:
            The summary part.

        """
        # summaries written before population fronts were kept name the archive's without a suffix
        archive_volume = data.get("hypervolume_archive", data.get("hypervolume", 0.0))
        archive_size = data.get("front_size_archive", data.get("front_size", 0))
        return cls(
            hypervolume_population=float(data.get("hypervolume_population", archive_volume)),
            hypervolume_archive=float(archive_volume),
            evaluations=int(data.get("evaluations", 0)),
            trained=int(data.get("trained", 0)),
            screened_out=int(data.get("screened_out", 0)),
            epochs_trained=data.get("epochs_trained"),
            cache_hits=int(data.get("cache_hits", 0)),
            front_size_population=int(data.get("front_size_population", archive_size)),
            front_size_archive=int(archive_size),
            best_accuracy=data.get("best_accuracy"),
            feasible=data.get("feasible"),
            best_feasible_accuracy=data.get("best_feasible_accuracy"),
        )


@dataclass(frozen=True)
class RunSummary:
    """One run's part of summary.json: its number, seed and counts."""

    run: int
    seed: int
    front: FrontSummary

    def to_dict(self) -> RunSummaryDocument:
        """The JSON form: run and seed, then the counts."""
        return {"run": self.run, "seed": self.seed, **self.front.to_dict()}


@dataclass(frozen=True)
class RunInfo:
    """How an experiment ran: what summary.json records beside its counts."""

    status: str  # succeeded or cancelled
    wall_time_s: float
    resumed_with_rows: int
    feature_set: str
    protocol: str
    mask_length: int
    fingerprint: str
    evaluator: dict[str, Any]  # `Evaluator.describe()`, as the evaluator reports itself
    fitness_cache: str  # `FitnessCache.describe()`


@dataclass(frozen=True)
class Summary:
    """summary.json: the experiment's name and status, each run's counts, the aggregate's, how it ran.

    `extra` keeps the fields a reader does not know (written by another evoprune version), so a summary
    read and written again loses nothing.
    """

    experiment: str
    status: str
    runs: tuple[RunSummary, ...]
    aggregate: FrontSummary
    wall_time_s: float = 0.0
    resumed_with_rows: int = 0
    feature_set: str | None = None
    protocol: str | None = None
    mask_length: int | None = None
    fingerprint: str | None = None
    evaluator: dict[str, Any] = field(default_factory=dict)
    fitness_cache: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, keys in the order summary.json has always had them."""
        return {
            "experiment": self.experiment,
            "status": self.status,
            "runs": [run.to_dict() for run in self.runs],
            "aggregate": self.aggregate.to_dict(),
            "wall_time_s": self.wall_time_s,
            "resumed_with_rows": self.resumed_with_rows,
            "feature_set": self.feature_set,
            "protocol": self.protocol,
            "mask_length": self.mask_length,
            "fingerprint": self.fingerprint,
            "evaluator": self.evaluator,
            "fitness_cache": self.fitness_cache,
            **self.extra,
            "versions": self.versions,
        }

    def write(self, path: StoragePath) -> None:
        """Replace summary.json atomically (indented, as people read it), sealed by its sha256.

        Args:
            path: the results directory's `ResultsLayout.summary`.

        """
        write_sealed_json(path, self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Summary:
        """Read a parsed summary.json back.

        Args:
            data: the parsed JSON.

        Returns:
            The summary.

        Raises:
            ValueError: it is not a summary (no aggregate, or runs that are not objects).

        """
        try:
            runs = tuple(
                RunSummary(run=int(part["run"]), seed=int(part["seed"]), front=FrontSummary.from_dict(part))
                for part in data.get("runs", [])
            )
            aggregate = FrontSummary.from_dict(data["aggregate"])
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not an evoprune summary: {error!r}") from None
        known = {item.name for item in fields(cls)}
        return cls(
            experiment=str(data.get("experiment", "")),
            status=str(data.get("status", "")),
            runs=runs,
            aggregate=aggregate,
            wall_time_s=float(data.get("wall_time_s", 0.0)),
            resumed_with_rows=int(data.get("resumed_with_rows", 0)),
            feature_set=data.get("feature_set"),
            protocol=data.get("protocol"),
            mask_length=data.get("mask_length"),
            fingerprint=data.get("fingerprint"),
            evaluator=dict(data.get("evaluator") or {}),
            fitness_cache=data.get("fitness_cache"),
            versions=dict(data.get("versions") or {}),
            extra={key: value for key, value in data.items() if key not in known},
        )

    @classmethod
    def read(cls, path: StoragePath) -> Summary:
        """Read summary.json, checking its seal (a summary written before seals is read as it is).

        Args:
            path: the results directory's `ResultsLayout.summary`.

        Returns:
            The summary.

        Raises:
            CorruptFileError: cut short or changed since it was written; the message names the file and
                what to do.
            OSError: it cannot be read.
            ValueError: it is not a summary.

        """
        return cls.from_dict(read_sealed_json(path))
