import itertools

import numpy as np
import pytest

from evoprune.coordinator.results.fronts import FrontRow
from evoprune.coordinator.results.picks import (
    PickError,
    best_accuracy,
    front_rows,
    has_kinds,
    knee,
    pick,
    smallest,
)


def row(mask, accuracy, active, auroc, run=-1, **extra):
    return FrontRow.of(
        {
            "run": run,
            "mask": mask,
            "mask_length": 8,
            "accuracy": accuracy,
            "active_fraction": active,
            "auroc": auroc,
            **extra,
        }
    )


FRONT = [
    row("a", 0.95, 0.90, 0.70),
    row("b", 0.95, 0.60, 0.60),
    row("c", 0.95, 0.60, 0.65),
    row("d", 0.90, 0.30, 0.80),
    row("e", 0.60, 0.05, 0.85),
]


def test_best_accuracy_breaks_ties_by_fewer_active_then_higher_auroc():
    assert best_accuracy(FRONT)["mask"] == "c"
    assert best_accuracy(FRONT[:2])["mask"] == "b"
    # complete ties are decided by the mask, whatever the input order
    twins = [row("y", 0.9, 0.5, 0.5), row("x", 0.9, 0.5, 0.5)]
    assert best_accuracy(twins)["mask"] == best_accuracy(twins[::-1])["mask"] == "x"


def test_smallest_takes_the_fewest_active_inputs_at_or_above_the_floor():
    assert smallest(FRONT, 0.9)["mask"] == "d"
    assert smallest(FRONT, 0.90000001)["mask"] == "c"
    assert smallest(FRONT, 0.0)["mask"] == "e"
    assert smallest(FRONT, 0.6)["mask"] == "e"  # the floor itself qualifies


def test_smallest_names_the_floor_when_nothing_qualifies():
    with pytest.raises(PickError, match=r"accuracy >= 0\.97.*best on this front is 0\.95"):
        smallest(FRONT, 0.97)
    with pytest.raises(PickError, match=r"in \[0, 1\]"):
        smallest(FRONT, 1.5)


def test_knee_of_a_bent_two_objective_front():
    # accuracy falls slowly, then sharply, as inputs are removed: the bend is at 0.2 active
    bent = [row("full", 0.96, 1.0, 0.5), row("bend", 0.93, 0.2, 0.5), row("tiny", 0.30, 0.0, 0.5)]
    bent += [row("mid", 0.95, 0.6, 0.5), row("low", 0.70, 0.1, 0.5)]
    assert knee(bent)["mask"] == "bend"


def test_knee_of_a_three_objective_front_is_the_point_beyond_the_extreme_plane():
    extremes = [row("acc", 1.0, 1.0, 0.0), row("small", 0.0, 0.0, 0.0), row("rob", 0.0, 1.0, 1.0)]
    inner = [row("in", 0.5, 0.5, 0.5)]  # on the plane through the extremes' normalised corners
    bulge = [row("out", 0.8, 0.2, 0.8)]
    assert knee(extremes + inner + bulge)["mask"] == "out"
    # any order of the rows gives the same knee
    for order in itertools.permutations(extremes + inner + bulge):
        assert knee(list(order))["mask"] == "out"


def test_knee_of_degenerate_fronts():
    assert knee([FRONT[0]])["mask"] == "a"
    same = [row("p", 0.9, 0.5, 0.7), row("q", 0.9, 0.5, 0.7)]
    assert knee(same)["mask"] == "p"
    # two members cannot span a plane in 3-D: the unit-corner plane stands in, favouring the member with
    # the smaller sum of normalised objectives (s is best in two of the three)
    assert knee([row("s", 0.5, 0.1, 0.9), row("t", 0.9, 0.9, 0.5)])["mask"] == "s"
    # with equal sums the best-accuracy order decides
    assert knee([row("u", 0.5, 0.1, 0.5), row("v", 0.9, 0.5, 0.5)])["mask"] == "v"
    # collinear members in 3-D: the extreme points do not span a plane; the unit-corner plane stands in
    line = [row(f"m{i}", 0.5 + 0.1 * i, 0.2 * i, 0.9 - 0.1 * i) for i in range(4)]
    assert knee(line)["mask"] in {r["mask"] for r in line}


def test_knee_is_non_dominated_on_random_fronts():
    rng = np.random.default_rng(0)
    for trial in range(20):
        points = rng.random((12, 3))
        rows = [row(f"{trial}-{i}", *point) for i, point in enumerate(points)]
        chosen = knee(rows)
        assert chosen in rows


def test_pick_dispatches_and_checks_its_arguments():
    assert pick(FRONT, "best-accuracy")["mask"] == "c"
    assert pick(FRONT, "smallest", min_accuracy=0.9)["mask"] == "d"
    assert pick(FRONT, "knee")["mask"] in "abcde"
    with pytest.raises(PickError, match="needs --min-accuracy"):
        pick(FRONT, "smallest")
    with pytest.raises(PickError, match="only to the pick rule smallest"):
        pick(FRONT, "knee", min_accuracy=0.5)
    with pytest.raises(PickError, match="unknown pick rule 'biggest'"):
        pick(FRONT, "biggest")
    with pytest.raises(PickError, match="empty"):
        pick([], "knee")


def test_front_rows_selects_run_and_kind():
    rows = [
        row("p0", 0.9, 0.5, 0.5, run=0, kind="population"),
        row("a0", 0.9, 0.4, 0.5, run=0, kind="archive"),
        row("pa", 0.9, 0.5, 0.5, run=-1, kind="population"),
        row("aa", 0.9, 0.4, 0.5, run=-1, kind="archive"),
    ]
    assert has_kinds(rows)
    assert [r["mask"] for r in front_rows(rows)] == ["pa"]
    assert [r["mask"] for r in front_rows(rows, kind="archive")] == ["aa"]
    assert [r["mask"] for r in front_rows(rows, run=0, kind="population")] == ["p0"]
    with pytest.raises(PickError, match=r"run 3 has no front; the results hold runs -1 \(all runs\), 0"):
        front_rows(rows, run=3)
    with pytest.raises(PickError, match="unknown front kind"):
        front_rows(rows, kind="final")
    with pytest.raises(PickError, match="no archive front"):
        front_rows(rows[:1] + rows[2:3], run=0, kind="archive")


def test_front_rows_of_files_without_kinds_serve_either_kind():
    rows = [row("x", 0.9, 0.5, 0.5, run=0), row("y", 0.8, 0.2, 0.5, run=-1)]
    assert not has_kinds(rows)
    assert front_rows(rows, kind="population") == front_rows(rows, kind="archive") == [rows[1]]


def test_a_pick_prefers_the_feasible_members_of_a_constrained_front():
    from evoprune.coordinator.results.picks import feasible_first

    # "a" and "b" break the constraints: best-accuracy would take "b", knee and smallest others
    constrained = [row(r.mask, *r.objectives, feasible=r.mask not in ("a", "b", "c")) for r in FRONT]
    candidates, note = feasible_first(constrained)
    assert [r.mask for r in candidates] == ["d", "e"]
    assert note == {"feasible": 2, "front_size": 5, "picked_from": "feasible"}
    assert pick(candidates, "best-accuracy").mask == "d"
    # without constraints every row stays, and no note
    assert feasible_first(FRONT) == (FRONT, None)
    # none feasible: every row stays, and the note says so
    infeasible = [row(r.mask, *r.objectives, feasible=False) for r in FRONT]
    assert feasible_first(infeasible) == (
        infeasible,
        {"feasible": 0, "front_size": 5, "picked_from": "all: no member is feasible"},
    )
