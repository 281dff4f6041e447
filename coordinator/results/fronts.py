"""Fronts of an experiment: their kinds, a row of front.parquet, and a live front as the service shows it."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from evoprune.shared.objectives import minimisation_of

if TYPE_CHECKING:
    from evoprune.shared.store import LiveFrontDocument

# the run number of the front aggregated over all runs, in front.parquet, summaries, events and HTTP
AGGREGATE_RUN = -1


class FrontKind(enum.StrEnum):
    """Which front of a run: the value is what front.parquet's `kind` column holds."""

    # the paper's: the non-dominated members of a run's final population (at most population_size points)
    POPULATION = "population"
    # the non-dominated set of every evaluation a run made (usually larger, never worse)
    ARCHIVE = "archive"


# analyses, picks and exports use the paper's fronts unless told otherwise
DEFAULT_KIND = FrontKind.POPULATION
FRONT_KINDS: tuple[str, ...] = tuple(kind.value for kind in FrontKind)
# columns a front row may lack: `kind` before fronts had kinds, test scores unless fitness_split is
# validation, `feasible` unless the search has constraints
_OPTIONAL_COLUMNS = ("kind", "test_accuracy", "test_auroc", "feasible")


class FrontRecord(TypedDict):
    """One row of front.parquet as the file holds it (`FrontRow` is its typed value).

    `kind` is missing from files written before fronts had kinds; the test scores only with
    fitness_split validation, `feasible` only when the search has constraints.
    """

    run: int
    mask: str
    mask_length: int
    accuracy: float
    active_fraction: float
    auroc: float
    kind: NotRequired[str]
    test_accuracy: NotRequired[float | None]
    test_auroc: NotRequired[float | None]
    feasible: NotRequired[bool | None]


@dataclass(frozen=True)
class FrontRow(Mapping[str, object]):
    """One member of one front, as a row of front.parquet.

    It also reads as a mapping of the columns its file had (an optional column that is None is left
    out), so table and JSON consumers (pandas, `dict(row)`) see exactly the file's record.
    """

    run: int
    mask: str
    mask_length: int
    accuracy: float
    active_fraction: float
    auroc: float
    kind: FrontKind | None = None  # None: written before fronts had kinds (archive fronts only)
    test_accuracy: float | None = None
    test_auroc: float | None = None
    feasible: bool | None = None  # whether it keeps to search.constraints; None: the search has none

    @property
    def objectives(self) -> tuple[float, float, float]:
        """(accuracy, active_fraction, auroc)."""
        return (self.accuracy, self.active_fraction, self.auroc)

    def minimisation(self) -> tuple[float, float, float]:
        """(1 - accuracy, active_fraction, 1 - auroc): the space fronts and hypervolume work in."""
        return minimisation_of(self.objectives)

    @classmethod
    def of(cls, record: Mapping[str, Any], *, run: int | None = None, kind: str | None = None) -> FrontRow:
        """A front row from a record: a front.parquet row, or an evaluation row placed on a front.

        Args:
            record: a mapping with `run`, `mask`, `mask_length` and the objectives (test scores and
                `kind` when present).
            run: the run whose front it is (default: the record's).
            kind: the front's kind (default: the record's, if any).

        Returns:
            The row.

        """
        kind_value = kind if kind is not None else record.get("kind")
        test_accuracy, test_auroc = record.get("test_accuracy"), record.get("test_auroc")
        feasible = record.get("feasible")
        return cls(
            run=int(record["run"] if run is None else run),
            mask=str(record["mask"]),
            mask_length=int(record["mask_length"]),
            accuracy=float(record["accuracy"]),
            active_fraction=float(record["active_fraction"]),
            auroc=float(record["auroc"]),
            kind=None if kind_value is None else FrontKind(kind_value),
            test_accuracy=None if test_accuracy is None else float(test_accuracy),
            test_auroc=None if test_auroc is None else float(test_auroc),
            feasible=None if feasible is None else bool(feasible),
        )

    def record(self) -> FrontRecord:
        """The row as front.parquet's record, typed: `dict(row)`, its optional columns only when set."""
        record: FrontRecord = {
            "run": self.run,
            "mask": self.mask,
            "mask_length": self.mask_length,
            "accuracy": self.accuracy,
            "active_fraction": self.active_fraction,
            "auroc": self.auroc,
        }
        # in the columns' order, as the mapping reads them
        if self.kind is not None:
            record["kind"] = self.kind.value
        if self.test_accuracy is not None:
            record["test_accuracy"] = self.test_accuracy
        if self.test_auroc is not None:
            record["test_auroc"] = self.test_auroc
        if self.feasible is not None:
            record["feasible"] = self.feasible
        return record

    def __getitem__(self, name: str) -> object:
        if name not in self._columns():
            raise KeyError(name)
        value = getattr(self, name)
        return value.value if isinstance(value, FrontKind) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns())

    def __len__(self) -> int:
        return len(self._columns())

    def _columns(self) -> tuple[str, ...]:
        return tuple(
            item.name
            for item in fields(self)
            if item.name not in _OPTIONAL_COLUMNS or getattr(self, item.name) is not None
        )


@dataclass(frozen=True)
class LiveFront:
    """One front as the service keeps and shows it while an experiment runs (`FrontState.fronts` values).

    Its dict form (`to_dict`) is the stored and served one: points, masks, hypervolume, evaluations.
    """

    points: tuple[tuple[float, float, float], ...]  # (accuracy, active_fraction, auroc) per member
    masks: tuple[str, ...]  # the members' hex masks, in `points` order
    hypervolume: float
    evaluations: int

    def to_dict(self) -> LiveFrontDocument:
        """The stored form: {"points": [[accuracy, active_fraction, auroc], ...], "masks", ...}."""
        return {
            "points": [list(point) for point in self.points],
            "masks": list(self.masks),
            "hypervolume": self.hypervolume,
            "evaluations": self.evaluations,
        }
