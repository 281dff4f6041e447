"""Choosing one member of a Pareto front: best accuracy, smallest above an accuracy floor, or the knee."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, TypedDict

import numpy as np

from evoprune.coordinator.results.fronts import AGGREGATE_RUN, DEFAULT_KIND, FRONT_KINDS, FrontRow

Rule = Literal["best-accuracy", "smallest", "knee"]
RULES: tuple[str, ...] = ("best-accuracy", "smallest", "knee")
# front.parquet records as read from the file, or rows already typed
FrontRecords = Iterable[FrontRow | Mapping[str, Any]]
# Normal vectors of the extreme-point hyperplane whose smallest component falls below this are treated as
# degenerate (the extreme points do not span a plane facing the ideal point).
DEGENERATE_NORMAL = 1e-12
KNEE_METHOD = (
    "largest distance beyond the hyperplane through the front's extreme points, objectives normalised by "
    "the front's ideal and nadir points (Das 1999; as in KnEA, Zhang, Tian & Jin 2015)"
)


class PickError(ValueError):
    """No front member fits the request; the message says what was asked and what the front offers."""


def front_rows(rows: FrontRecords, *, run: int = AGGREGATE_RUN, kind: str = DEFAULT_KIND) -> list[FrontRow]:
    """Select one front from the rows of front.parquet.

    Files written before fronts had a `kind` column hold only the archive front (the non-dominated set of
    all evaluations); their rows are returned for either kind.

    Args:
        rows: front.parquet rows (`run`, `mask`, objectives, and `kind` when present).
        run: a run number, or -1 for the aggregated front of all runs.
        kind: `population` (the paper's front: non-dominated members of the final population) or
            `archive`.

    Returns:
        The front's rows, in file order.

    Raises:
        PickError: an unknown kind, or no rows for that run and kind.

    """
    every = _typed(rows)
    of_kind = rows_of_kind(every, kind)
    runs = sorted({row.run for row in every})
    if run not in runs:
        named = ", ".join("-1 (all runs)" if number == AGGREGATE_RUN else str(number) for number in runs)
        raise PickError(f"run {run} has no front; the results hold runs {named}")
    selected = [row for row in of_kind if row.run == run]
    if not selected:
        raise PickError(f"run {run} has no {kind} front in these results")
    return selected


def rows_of_kind(rows: FrontRecords, kind: str) -> list[FrontRow]:
    """The rows of one front kind (all of them in files without a `kind` column; see `front_rows`).

    Args:
        rows: front.parquet rows.
        kind: `population` or `archive`.

    Returns:
        The rows, in file order.

    Raises:
        PickError: an unknown kind.

    """
    if kind not in FRONT_KINDS:
        raise PickError(f"unknown front kind {kind!r}; choose one of {', '.join(FRONT_KINDS)}")
    return [row for row in _typed(rows) if row.kind is None or row.kind == kind]


def has_kinds(rows: FrontRecords) -> bool:
    """Whether front rows tell the population front from the archive front (a `kind` column)."""
    return any(row.kind is not None for row in _typed(rows))


class FeasibilityNote(TypedDict):
    """Which members a pick of a constrained front chose among (export.json's `pick.constraints`)."""

    feasible: int  # how many of the front's members keep to search.constraints
    front_size: int
    picked_from: str  # "feasible", or "all: no member is feasible"


def feasible_first(rows: Sequence[FrontRow]) -> tuple[list[FrontRow], FeasibilityNote | None]:
    """The rows a pick chooses among: the feasible ones when the search had constraints and any is.

    A front of a constrained search also holds the infeasible masks that bound its feasible ones
    (coordinator.results.writer); a member picked for deployment should keep to the constraints, so the
    infeasible ones are set aside while a feasible member exists. When none does, every row stays and
    the note says so.

    Args:
        rows: a front (rows carry `feasible` only when the search had constraints).

    Returns:
        The rows to pick from, and None without constraints or else a note: `feasible` (how many of
        `front_size` rows are), `picked_from` (`feasible` or `all: no member is feasible`).

    """
    if not rows or all(row.feasible is None for row in rows):
        return list(rows), None
    feasible = [row for row in rows if row.feasible]
    if not feasible:
        return list(rows), FeasibilityNote(
            feasible=0, front_size=len(rows), picked_from="all: no member is feasible"
        )
    return feasible, FeasibilityNote(feasible=len(feasible), front_size=len(rows), picked_from="feasible")


def _typed(rows: FrontRecords) -> list[FrontRow]:
    return [row if isinstance(row, FrontRow) else FrontRow.of(row) for row in rows]


def _best_first_key(row: FrontRow) -> tuple[float, float, float, str]:
    return (-row.accuracy, row.active_fraction, -row.auroc, row.mask)


def best_accuracy(rows: Sequence[FrontRow]) -> FrontRow:
    """The most accurate member; ties go to fewer active inputs, then to the higher AUROC.

    Args:
        rows: a front (any rows with `accuracy`, `active_fraction`, `auroc`, `mask`).

    Returns:
        The chosen row (the mask's hex decides a complete tie, so the choice is reproducible).

    Raises:
        PickError: the front is empty.

    """
    _require_rows(rows)
    return min(rows, key=_best_first_key)


def smallest(rows: Sequence[FrontRow], min_accuracy: float) -> FrontRow:
    """The member with the fewest active inputs whose accuracy is at least `min_accuracy`.

    Ties go to the higher accuracy, then to the higher AUROC.

    Args:
        rows: a front.
        min_accuracy: the accuracy floor, in [0, 1].

    Returns:
        The chosen row.

    Raises:
        PickError: the floor is outside [0, 1], or no member reaches it.

    """
    _require_rows(rows)
    if not (isinstance(min_accuracy, int | float) and 0.0 <= min_accuracy <= 1.0):
        raise PickError(f"--min-accuracy must be a number in [0, 1], got {min_accuracy!r}")
    qualifying = [row for row in rows if row.accuracy >= min_accuracy]
    if not qualifying:
        best = max(row.accuracy for row in rows)
        raise PickError(
            f"no front member has accuracy >= {min_accuracy} (--min-accuracy {min_accuracy}); "
            f"the best on this front is {best:.6g}"
        )
    return min(qualifying, key=lambda row: (row.active_fraction, *_best_first_key(row)))


def knee(rows: Sequence[FrontRow]) -> FrontRow:
    """The knee of the front: the member that bulges farthest out of the plane through the extreme points.

    Das (1999), "On characterizing the 'knee' of the Pareto curve based on normal-boundary intersection",
    Structural Optimization 18:107-115, defines the knee as the point of maximal distance from the convex
    hull of the individual minima along its normal, towards the ideal point; KnEA (Zhang, Tian & Jin 2015,
    IEEE TEVC 19(6):761-776) uses the same distance to the extreme-point hyperplane. Here the objectives
    are taken in minimisation form (1 - accuracy, active_fraction, 1 - AUROC) and normalised by the front's
    ideal and nadir points; an objective constant over the front is dropped. The extreme point of an
    objective is the member best in it (ties broken by the best-accuracy order). The hyperplane through
    the extreme points is n·f = 1; when those points do not span a plane facing the ideal point (fewer
    distinct extremes than objectives, or a normal with a non-positive component), the plane through the
    normalised unit corners, sum(f) = 1, stands in for it. A one-member front is its own knee; distance
    ties go to the best-accuracy order.

    Args:
        rows: a front.

    Returns:
        The chosen row.

    Raises:
        PickError: the front is empty.

    """
    _require_rows(rows)
    ordered = sorted(rows, key=_best_first_key)
    if len(ordered) == 1:
        return ordered[0]
    points = np.array([row.minimisation() for row in ordered], dtype=np.float64)
    ideal, nadir = points.min(axis=0), points.max(axis=0)
    spread = nadir - ideal
    varying = spread > 0
    if not varying.any():
        return ordered[0]
    normalised = (points[:, varying] - ideal[varying]) / spread[varying]
    normal = _extreme_plane_normal(normalised)
    distances = (1.0 - normalised @ normal) / np.linalg.norm(normal)
    # `ordered` is best-accuracy first and argmax takes the first maximum: that is the tie-break
    return ordered[int(np.argmax(distances))]


def _extreme_plane_normal(points: np.ndarray) -> np.ndarray:
    """Normal n of the hyperplane n·f = 1 through the extreme points, or the unit-corner plane's."""
    dimensions = points.shape[1]
    fallback = np.ones(dimensions)
    if dimensions == 1:
        return fallback
    # per objective the best member; `points` is in best-accuracy order, so argmin breaks ties by it
    extremes = points[[int(np.argmin(points[:, axis])) for axis in range(dimensions)]]
    if len({tuple(point) for point in extremes}) < dimensions:
        return fallback
    try:
        normal = np.linalg.solve(extremes, np.ones(dimensions))
    except np.linalg.LinAlgError:
        return fallback
    if not np.all(np.isfinite(normal)) or normal.min() <= DEGENERATE_NORMAL:
        return fallback
    return normal


def pick(rows: Sequence[FrontRow], rule: str, *, min_accuracy: float | None = None) -> FrontRow:
    """Apply a pick rule by name.

    Args:
        rows: a front.
        rule: `best-accuracy`, `smallest` (needs `min_accuracy`) or `knee`.
        min_accuracy: the accuracy floor of `smallest`.

    Returns:
        The chosen row.

    Raises:
        PickError: an unknown rule, a missing or stray floor, an empty front, or no qualifying member.

    """
    if rule not in RULES:
        raise PickError(f"unknown pick rule {rule!r}; choose one of {', '.join(RULES)}")
    if rule == "smallest":
        if min_accuracy is None:
            raise PickError("the pick rule smallest needs --min-accuracy A")
        return smallest(rows, min_accuracy)
    if min_accuracy is not None:
        raise PickError(f"--min-accuracy applies only to the pick rule smallest, not {rule}")
    return best_accuracy(rows) if rule == "best-accuracy" else knee(rows)


def _require_rows(rows: Sequence[FrontRow]) -> None:
    if not rows:
        raise PickError("the front is empty: there is nothing to pick from")
    for row in rows:
        for name, value in zip(("accuracy", "active_fraction", "auroc"), row.objectives, strict=True):
            if not math.isfinite(value):
                raise PickError(f"front row {row.mask!r} has no finite {name}")
