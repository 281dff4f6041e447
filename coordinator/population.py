"""The population fronts of a running or finished experiment, read from its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from evoprune.coordinator.checkpoint import CheckpointError, read_json
from evoprune.coordinator.nsga2 import NSGA2, SearchStateError
from evoprune.coordinator.results import AGGREGATE_RUN
from evoprune.coordinator.results_dir import ResultsLayout
from evoprune.shared.config import SearchConfig
from evoprune.shared.masks import encode_mask
from evoprune.shared.pareto import hypervolume, pareto_mask


def population_fronts(results_dir: Path, search: SearchConfig) -> dict[int, dict[str, Any]]:
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
        run → {"points": [[accuracy, active_fraction, auroc], ...], "masks", "hypervolume", "evaluations"}
        (the live fronts' form); empty before the first checkpoint or when it cannot be read.

    """
    try:
        checkpoint = read_json(ResultsLayout(results_dir).checkpoint)
        runs = [NSGA2.from_state(state, search) for state in checkpoint["runs"]]
    except (CheckpointError, SearchStateError, KeyError, TypeError):
        return {}
    distinct_objectives = search.bookkeeping == "jmetalpy"
    fronts: dict[int, dict[str, Any]] = {}
    union: dict[str, np.ndarray] = {}
    for index, run in enumerate(runs):
        masks, objectives = run.population()
        distinct = dict(zip((encode_mask(mask) for mask in masks), objectives, strict=True))
        front = _front(_first_of_each_point(distinct) if distinct_objectives else distinct)
        fronts[index] = {**front, "evaluations": run.asked - sum(len(m) for m in run.outstanding.values())}
        union.update((mask, distinct[mask]) for mask in front["masks"])
    if fronts:
        aggregate = _front(_first_of_each_point(union) if distinct_objectives else union)
        fronts[AGGREGATE_RUN] = {**aggregate, "evaluations": sum(f["evaluations"] for f in fronts.values())}
    return fronts


def _first_of_each_point(members: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One mask per objective vector, the first inserted (front.parquet keeps the same ones)."""
    kept: dict[tuple[float, ...], str] = {}
    for mask, point in members.items():
        kept.setdefault(tuple(point.tolist()), mask)
    return {mask: members[mask] for mask in kept.values()}


def _front(members: dict[str, np.ndarray]) -> dict[str, Any]:
    """The non-dominated members of mask → minimisation objectives, in the live fronts' form."""
    if not members:
        return {"points": [], "masks": [], "hypervolume": 0.0}
    masks = list(members)
    points = np.array([members[mask] for mask in masks], dtype=np.float64).reshape(-1, 3)
    keep = pareto_mask(points)
    kept = points[keep]
    return {
        "points": [[1.0 - p[0], p[1], 1.0 - p[2]] for p in kept.tolist()],
        "masks": [mask for mask, alive in zip(masks, keep, strict=True) if alive],
        "hypervolume": hypervolume(kept),
    }
