"""The population fronts of a running or finished experiment, read from its checkpoint."""

from __future__ import annotations

import numpy as np

from evoprune.coordinator.nsga2 import NSGA2, SearchStateError
from evoprune.coordinator.results.checkpoint import Checkpoint, CheckpointError
from evoprune.coordinator.results.fronts import AGGREGATE_RUN, LiveFront
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.shared.config import SearchConfig
from evoprune.shared.masks import encode_mask
from evoprune.shared.pareto import hypervolume, pareto_mask
from evoprune.shared.storage import StoragePath


def population_fronts(results_dir: StoragePath, search: SearchConfig) -> dict[int, LiveFront]:
    """Each run's population front as it stands, and their non-dominated union (run = -1).

    The checkpoint holds every run's search state, so this is the live counterpart of front.parquet's
    `population` rows: the non-dominated members of each run's population with every told step applied
    (the final population once the run has finished). Under `search.bookkeeping: jmetalpy` each front
    keeps one member per objective vector, the first in population order (run order for the union), as
    front.parquet does.

    Args:
        results_dir: the experiment's results directory.
        search: the experiment's search config.

    Returns:
        run → its live front; empty before the first checkpoint or when it cannot be read.

    """
    try:
        checkpoint = Checkpoint.read(ResultsLayout(results_dir).checkpoint)
        runs = [NSGA2.from_state(state, search) for state in checkpoint.runs]
    except (CheckpointError, SearchStateError, KeyError, TypeError):
        return {}
    distinct_objectives = search.bookkeeping == "jmetalpy"
    fronts: dict[int, LiveFront] = {}
    union: dict[str, np.ndarray] = {}
    for index, run in enumerate(runs):
        masks, objectives = run.population()
        distinct = dict(zip((encode_mask(mask) for mask in masks), objectives, strict=True))
        evaluations = run.asked - sum(len(m) for m in run.outstanding.values())
        front = _front(_first_of_each_point(distinct) if distinct_objectives else distinct, evaluations)
        fronts[index] = front
        union.update((mask, distinct[mask]) for mask in front.masks)
    if fronts:
        done = sum(front.evaluations for front in fronts.values())
        fronts[AGGREGATE_RUN] = _front(_first_of_each_point(union) if distinct_objectives else union, done)
    return fronts


def _first_of_each_point(members: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One mask per objective vector, the first inserted (front.parquet keeps the same ones)."""
    kept: dict[tuple[float, ...], str] = {}
    for mask, point in members.items():
        kept.setdefault(tuple(point.tolist()), mask)
    return {mask: members[mask] for mask in kept.values()}


def _front(members: dict[str, np.ndarray], evaluations: int) -> LiveFront:
    """The non-dominated members of mask → minimisation objectives, as a live front."""
    if not members:
        return LiveFront(points=(), masks=(), hypervolume=0.0, evaluations=evaluations)
    masks = list(members)
    points = np.array([members[mask] for mask in masks], dtype=np.float64).reshape(-1, 3)
    keep = pareto_mask(points)
    kept = points[keep]
    return LiveFront(
        points=tuple((1.0 - p[0], p[1], 1.0 - p[2]) for p in kept.tolist()),
        masks=tuple(mask for mask, alive in zip(masks, keep, strict=True) if alive),
        hypervolume=hypervolume(kept),
        evaluations=evaluations,
    )
