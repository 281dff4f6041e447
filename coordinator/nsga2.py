"""NSGA-II over binary masks as an ask/tell object; DEAP does the non-dominated selection by default.

Two bookkeepings (`search.bookkeeping`) decide what the binary tournament reads. `deap` (the default): the
survivors of each step are ranked, and their crowding distances computed, afresh among themselves, and so is
the initial population. `jmetalpy` (the reference's jMetalPy 1.5.7 NSGA-II): the ranks and crowding distances
computed on the untruncated join of population and offspring are kept with the survivors, the join is walked
in jMetalPy's order (fronts in discovery order, the truncated front sorted by crowding), and the initial
population carries none, so the first tournament is a coin toss.

With `search.constraints`, every comparison is constrained domination (Deb's rule, shared.pareto): ranks,
survival and so the binary tournament put feasible masks before infeasible ones, and less violating
infeasible ones before more violating ones. DEAP has no constrained sort, so constrained survival is this
module's own (fronts taken whole, the last one cut by crowding distance, as `selNSGA2`); unconstrained
searches keep DEAP's, step for step as before. Each member's total violation is computed when its step is
told and kept (and checkpointed) beside its objectives, so a resumed run needs no more than its state.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

import numpy as np
from deap import base, creator, tools

from evoprune.coordinator.constraints import Constraints, ConstraintsError
from evoprune.shared.config import SearchConfig
from evoprune.shared.masks import decode_mask, encode_mask
from evoprune.shared.objectives import Evaluation
from evoprune.shared.pareto import (
    constrained_non_dominated_sort,
    crowding_distance,
    fronts_in_discovery_order,
    non_dominated_sort,
)

STATE_VERSION = 1

# The only DEAP `creator` calls of the project. The individual is a one-element list holding its index in
# the combined population, so that DEAP's selection can be mapped back onto numpy arrays of masks.
if not hasattr(creator, "EvopruneFitness"):
    creator.create("EvopruneFitness", base.Fitness, weights=(-1.0, -1.0, -1.0))
if not hasattr(creator, "EvopruneIndividual"):
    creator.create("EvopruneIndividual", list, fitness=creator.EvopruneFitness)


class SavedArrays(TypedDict):
    """Masks (hex), objectives and, where any is infeasible, constraint violations, as a state saves them."""

    masks: list[str]
    objectives: list[list[float]]
    violation: NotRequired[list[float]]


class SearchState(TypedDict):
    """A run's JSON-ready state (`NSGA2.state_dict`), as the checkpoint's `runs` hold it."""

    version: int
    mask_length: int
    next_step: int
    asked: int
    applied_through: int
    population: SavedArrays
    outstanding: dict[str, list[str]]  # step → hex masks asked and not yet told
    parents: NotRequired[dict[str, list[str]]]  # step → hex masks; states from before screening lack it
    received: dict[str, SavedArrays]
    rng: Mapping[str, Any]  # numpy's bit generator state, as numpy gives it
    rank: NotRequired[list[int]]  # jmetalpy bookkeeping only
    crowding: NotRequired[list[float | None]]  # jmetalpy bookkeeping only; None for infinity


class SearchStateError(ValueError):
    """A tell or a saved state that does not fit this search."""


@dataclass(frozen=True)
class Step:
    """Masks asked for together; told back together under the same step id."""

    step: int
    masks: np.ndarray  # (k, L) bool
    parents: np.ndarray  # (n, L) bool: the population the masks were bred from (none for the initial one)


def steps_in_flight(search: SearchConfig) -> int:
    """How many steps a run may have asked but not yet applied.

    Synchronous search waits for each step (1). Asynchronous search lets up to a generation's worth of
    offspring be in flight, so idle workers can be refilled; the number depends on the config only, never
    on the worker count, so results stay reproducible.

    Args:
        search: the search config.

    Returns:
        The lag k: step s is generated from the population after steps 0..s-k have been applied.

    """
    if not search.asynchronous:
        return 1
    return max(2, search.population_size // search.offspring_per_step)


def _individuals(objectives: np.ndarray) -> list:
    population = []
    for index, values in enumerate(objectives):
        individual = creator.EvopruneIndividual([index])
        individual.fitness.values = tuple(float(v) for v in values)
        population.append(individual)
    return population


def _rank_and_crowding(
    objectives: np.ndarray, violation: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Non-domination rank and crowding distance of every member, as NSGA-II's tournament reads them.

    Vectorised (shared.pareto) rather than DEAP's per-pair Python loop: it runs after every step. With
    violations the ranks are constrained domination's.
    """
    rank = np.zeros(len(objectives), dtype=np.int64)
    crowding = np.zeros(len(objectives), dtype=np.float64)
    fronts = (
        non_dominated_sort(objectives)
        if violation is None
        else constrained_non_dominated_sort(objectives, violation)
    )
    for front_index, front in enumerate(fronts):
        rank[front] = front_index
        crowding[front] = crowding_distance(objectives[front])
    return rank, crowding


class NSGA2:
    """One run of NSGA-II over masks of `mask_length` bits, minimising (1-acc, active, 1-auroc).

    Use: while not done: if can_ask(): step = ask(); ...evaluate...; tell(step.step, evaluations).
    Tells may come in any order; they are applied in step order and only when an ask needs them, so the
    search (and its RNG stream) is the same whatever the completion order.
    """

    def __init__(
        self, mask_length: int, search: SearchConfig, seed: int, constraints: Constraints | None = None
    ) -> None:
        """Start a run; nothing is asked yet.

        Args:
            mask_length: bits per mask.
            search: the search config.
            seed: the run's seed.
            constraints: the checker of `search.constraints`; None builds it from the config, which is
                enough unless a head budget is set (that needs the head's layout: `Constraints.of`).
                Without one such a run can be read (its state holds every violation) but not told.

        """
        if mask_length <= 0:
            raise ValueError("mask_length must be > 0")
        self.mask_length = mask_length
        self.search = search
        self._constrained = search.constraints.active
        if constraints is None and self._constrained and not search.constraints.on_head_size:
            constraints = Constraints(search.constraints)
        self._constraints = constraints
        self.lag = steps_in_flight(search)
        self._rng = np.random.default_rng(seed)
        self._population = np.zeros((0, mask_length), dtype=bool)
        self._objectives = np.zeros((0, 3), dtype=np.float64)
        # each member's total constraint violation (all 0 without constraints)
        self._violation = np.zeros(0, dtype=np.float64)
        self._jmetalpy = search.bookkeeping == "jmetalpy"
        # what the tournament reads; under jmetalpy these are state of their own (kept from each step's join),
        # under deap a function of the population
        self._rank = np.zeros(0, dtype=np.int64)
        self._crowding = np.zeros(0, dtype=np.float64)
        self._next_step = 0
        self._asked = 0
        self._applied_through = -1
        self._outstanding: dict[int, np.ndarray] = {}
        self._parents: dict[int, np.ndarray] = {}  # outstanding step → the population it was bred from
        self._received: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # ---- progress -------------------------------------------------------------------------------------

    @property
    def budget(self) -> int:
        """Evaluations this run may use, the initial population included."""
        return self.search.max_evaluations

    @property
    def asked(self) -> int:
        """Evaluations asked so far."""
        return self._asked

    @property
    def outstanding(self) -> dict[int, np.ndarray]:
        """Steps asked and not yet told: step id → masks."""
        return dict(self._outstanding)

    @property
    def done(self) -> bool:
        """True once the whole budget has been asked and told."""
        return self._asked >= self.budget and not self._outstanding

    def can_ask(self) -> bool:
        """Whether `ask` would return a step now."""
        if self._asked >= self.budget:
            return False
        return self._available_through() >= self._required_for(self._next_step)

    def _required_for(self, step: int) -> int:
        return -1 if step == 0 else max(0, step - self.lag)

    def _available_through(self) -> int:
        through = self._applied_through
        while through + 1 in self._received:
            through += 1
        return through

    # ---- ask / tell -----------------------------------------------------------------------------------

    def ask(self) -> Step:
        """Generate the next step's masks: the initial population first, then offspring.

        Returns:
            A step whose masks must be told back with `tell(step.step, ...)`.

        Raises:
            SearchStateError: `can_ask()` is false.

        """
        if not self.can_ask():
            raise SearchStateError("cannot ask: the budget is used or earlier steps are not told yet")
        step = self._next_step
        self._apply_through(self._required_for(step))
        if step == 0:
            masks = self._initial_population(min(self.search.population_size, self.budget))
        else:
            masks = self._offspring(min(self.search.offspring_per_step, self.budget - self._asked))
        self._outstanding[step] = masks
        self._parents[step] = self._population.copy()
        self._asked += len(masks)
        self._next_step += 1
        return Step(step=step, masks=masks.copy(), parents=self._population.copy())

    def parents_of(self, step: int) -> np.ndarray:
        """The population an outstanding step was bred from ((n, L) bools; none for the initial step).

        Args:
            step: an outstanding step id.

        Returns:
            Its parents' masks.

        Raises:
            SearchStateError: the step is not outstanding.

        """
        if step not in self._parents:
            raise SearchStateError(f"step {step} is not outstanding")
        return self._parents[step].copy()

    def tell(self, step: int, evaluations: Sequence[Evaluation]) -> None:
        """Hands back the evaluations of an asked step, in the order of its masks.

        Args:
            step: the step id from `ask`.
            evaluations: one per mask.

        Raises:
            SearchStateError: an unknown step or the wrong number of evaluations.

        """
        masks = self._outstanding.get(step)
        if masks is None:
            raise SearchStateError(f"step {step} was not asked or was already told")
        if len(evaluations) != len(masks):
            raise SearchStateError(f"step {step} has {len(masks)} masks but {len(evaluations)} evaluations")
        objectives = np.array([e.minimisation() for e in evaluations], dtype=np.float64).reshape(-1, 3)
        # a mask screened out at a short budget (search.screening) carries no full-protocol objectives: it
        # takes no part in survival, so no population ever holds a low-fidelity value
        full = np.array([e.full_fidelity for e in evaluations], dtype=bool)
        if step == 0 and not full.all():
            raise SearchStateError("the initial population cannot hold screened-out masks")
        violation = self._violations_of(masks[full], objectives[full])
        del self._outstanding[step]
        self._parents.pop(step, None)
        self._received[step] = (masks[full], objectives[full], violation)

    def _violations_of(self, masks: np.ndarray, objectives: np.ndarray) -> np.ndarray:
        if not self._constrained:
            return np.zeros(len(masks), dtype=np.float64)
        if self._constraints is None:
            raise SearchStateError(
                "search.constraints sets a head budget, which needs the head's layout: build the run with "
                "constraints=Constraints.of(config, input_dim, num_classes)"
            )
        try:
            return self._constraints.total_violation(masks, objectives)
        except ConstraintsError as error:
            raise SearchStateError(str(error)) from None

    def population(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the population as it stands with every told step applied; the run itself is not changed.

        Asynchronous search applies a step only when an ask needs it; applying it here, to the run itself,
        would let the next ask see a newer population than an uninterrupted run would (and a checkpoint
        written afterwards would carry that difference into a resume), so the steps are applied to a copy.

        Returns:
            (masks (P, L) bool, minimisation objectives (P, 3)).

        """
        masks, objectives, _ = self.population_with_violations()
        return masks, objectives

    def population_with_violations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The population as `population` gives it, with each member's total constraint violation.

        Returns:
            (masks (P, L) bool, minimisation objectives (P, 3), violations (P,); 0 = feasible, and all 0
            without constraints).

        """
        available = self._available_through()
        if available == self._applied_through:
            return self._population.copy(), self._objectives.copy(), self._violation.copy()
        preview = copy.deepcopy(self)
        preview._apply_through(available)
        return preview._population, preview._objectives, preview._violation

    # ---- operators ------------------------------------------------------------------------------------

    def _initial_population(self, size: int) -> np.ndarray:
        # the reference: p ~ U(0, 1), then round(p·L) distinct bits switched on
        masks = np.zeros((size, self.mask_length), dtype=bool)
        for row in masks:
            ones = int(np.rint(self._rng.random() * self.mask_length))
            row[self._rng.choice(self.mask_length, size=ones, replace=False)] = True
        return masks

    def _tournament(self) -> int:
        first, second = self._rng.choice(len(self._population), size=2, replace=False)
        if self._rank[first] != self._rank[second]:
            return int(first if self._rank[first] < self._rank[second] else second)
        if self._crowding[first] != self._crowding[second]:
            return int(first if self._crowding[first] > self._crowding[second] else second)
        return int(first if self._rng.random() < 0.5 else second)

    def _offspring(self, count: int) -> np.ndarray:
        length = self.mask_length
        mutation = self.search.mutation_probability or 1.0 / length
        children: list[np.ndarray] = []
        while len(children) < count:
            parent_a = self._population[self._tournament()]
            parent_b = self._population[self._tournament()]
            child_a, child_b = parent_a.copy(), parent_b.copy()
            if self._rng.random() < self.search.crossover_probability:
                swap = self._rng.random(length) < self.search.crossover_swap_probability
                child_a[swap], child_b[swap] = parent_b[swap], parent_a[swap]
            for child in (child_a, child_b):
                child ^= self._rng.random(length) < mutation
            children.extend([child_a, child_b])
        return np.array(children[:count], dtype=bool).reshape(count, length)

    def _apply_through(self, step: int) -> None:
        while self._applied_through < step:
            masks, objectives, violation = self._received.pop(self._applied_through + 1)
            if self._applied_through < 0:
                self._population, self._objectives, self._violation = masks, objectives, violation
            elif self._jmetalpy:
                self._survival_as_jmetalpy(masks, objectives, violation)
            elif self._constrained:
                self._constrained_selection(masks, objectives, violation)
            else:
                self._environmental_selection(masks, objectives, violation)
            self._applied_through += 1
            if not self._jmetalpy:
                self._rank, self._crowding = self._ranked()
            elif self._applied_through == 0:
                # jMetalPy ranks nothing before its first replacement: both tournament comparators read the
                # missing attributes as a tie, so its binary tournament falls through to the coin. Equal
                # ranks and distances make `_tournament` do the same: two distinct members drawn, a coin
                # picks one, each member chosen with probability 1/n.
                self._rank = np.zeros(len(objectives), dtype=np.int64)
                self._crowding = np.zeros(len(objectives), dtype=np.float64)

    def _ranked(self) -> tuple[np.ndarray, np.ndarray]:
        return _rank_and_crowding(self._objectives, self._violation if self._constrained else None)

    def _environmental_selection(
        self, masks: np.ndarray, objectives: np.ndarray, violation: np.ndarray
    ) -> None:
        combined_masks = np.concatenate([self._population, masks])
        combined_objectives = np.concatenate([self._objectives, objectives])
        combined_violation = np.concatenate([self._violation, violation])
        # DEAP's O(N log N) sort finds the same fronts as the quadratic one, at half the cost per step
        survivors = tools.selNSGA2(_individuals(combined_objectives), self.search.population_size, nd="log")
        keep = np.array([individual[0] for individual in survivors], dtype=np.int64)
        self._population, self._objectives = combined_masks[keep], combined_objectives[keep]
        self._violation = combined_violation[keep]

    def _constrained_selection(
        self, masks: np.ndarray, objectives: np.ndarray, violation: np.ndarray
    ) -> None:
        """`selNSGA2` under constrained domination: whole fronts while they fit, the last cut by crowding.

        The fronts are constrained domination's (feasible fronts, then each violation level's); the front
        that overflows keeps its members of largest crowding distance, computed on that whole front, ties in
        index order (population before offspring).
        """
        combined_masks = np.concatenate([self._population, masks])
        combined_objectives = np.concatenate([self._objectives, objectives])
        combined_violation = np.concatenate([self._violation, violation])
        keep: list[int] = []
        for front in constrained_non_dominated_sort(combined_objectives, combined_violation):
            room = self.search.population_size - len(keep)
            if room <= 0:
                break
            if len(front) <= room:
                keep.extend(front.tolist())
                continue
            crowding = crowding_distance(combined_objectives[front])
            keep.extend(front[np.argsort(-crowding, kind="stable")][:room].tolist())
        survivors = np.array(keep, dtype=np.int64)
        self._population, self._objectives = combined_masks[survivors], combined_objectives[survivors]
        self._violation = combined_violation[survivors]

    def _survival_as_jmetalpy(self, masks: np.ndarray, objectives: np.ndarray, violation: np.ndarray) -> None:
        """Survival as jMetalPy's one-shot ranking-and-crowding replacement, keeping its attributes.

        Follows `RankingAndDensityEstimatorReplacement.one_shot_truncation` as described: the join is ranked;
        fronts are taken whole, in discovery order, while they fit with room to spare; the front that fills
        the rest (exactly or beyond) is sorted by its crowding distance, largest first, ties in discovery
        order, and cut. Each front's distances are computed on the whole front before any cut. With
        constraints the ranking is constrained domination's, as jMetalPy's `DominanceComparator` ranks
        solutions that carry constraints.
        """
        join_masks = np.concatenate([self._population, masks])
        join_objectives = np.concatenate([self._objectives, objectives])
        join_violation = np.concatenate([self._violation, violation])
        rank = np.zeros(len(join_objectives), dtype=np.int64)
        crowding = np.zeros(len(join_objectives), dtype=np.float64)
        keep: list[int] = []
        fronts = fronts_in_discovery_order(join_objectives, join_violation if self._constrained else None)
        for front_index, front in enumerate(fronts):
            rank[front] = front_index
            crowding[front] = crowding_distance(join_objectives[front], chained_sorts=True)
            room = self.search.population_size - len(keep)
            if len(front) < room:
                keep.extend(front.tolist())
                continue
            by_crowding = front[np.argsort(-crowding[front], kind="stable")]
            keep.extend(by_crowding[:room].tolist())
            break
        survivors = np.array(keep, dtype=np.int64)
        self._population, self._objectives = join_masks[survivors], join_objectives[survivors]
        self._violation = join_violation[survivors]
        self._rank, self._crowding = rank[survivors], crowding[survivors]

    # ---- checkpointing --------------------------------------------------------------------------------

    def state_dict(self) -> SearchState:
        """Everything needed to continue exactly where the run is, as JSON-ready data."""
        state: SearchState = {
            "version": STATE_VERSION,
            "mask_length": self.mask_length,
            "next_step": self._next_step,
            "asked": self._asked,
            "applied_through": self._applied_through,
            "population": _arrays_to_json(self._population, self._objectives, self._violation),
            "outstanding": {
                str(step): [encode_mask(m) for m in masks] for step, masks in self._outstanding.items()
            },
            "parents": {str(step): [encode_mask(m) for m in masks] for step, masks in self._parents.items()},
            "received": {str(step): _arrays_to_json(*triple) for step, triple in self._received.items()},
            "rng": self._rng.bit_generator.state,
        }
        if self._jmetalpy:
            # kept from the last join, so not recomputable from the population; deap states leave them out
            # (recomputed on load), which keeps their checkpoints as they were. JSON has no infinity: None.
            state["rank"] = self._rank.tolist()
            state["crowding"] = [None if np.isinf(d) else float(d) for d in self._crowding]
        return state

    @classmethod
    def from_state(
        cls, state: SearchState, search: SearchConfig, constraints: Constraints | None = None
    ) -> NSGA2:
        """Rebuilds a run saved by `state_dict`.

        Args:
            state: the saved mapping.
            search: the search config the run was started with.
            constraints: as for the constructor; only telling more steps needs it.

        Returns:
            The run, continuing exactly where it was saved.

        Raises:
            SearchStateError: the state is from another format or is inconsistent.

        """
        try:
            if state["version"] != STATE_VERSION:
                raise SearchStateError(f"search state version {state['version']} is not {STATE_VERSION}")
            length = int(state["mask_length"])
            run = cls(length, search, seed=0, constraints=constraints)
            run._next_step = int(state["next_step"])
            run._asked = int(state["asked"])
            run._applied_through = int(state["applied_through"])
            run._population, run._objectives, run._violation = _arrays_from_json(state["population"], length)
            run._outstanding = {
                int(step): np.array([decode_mask(m, length) for m in masks], dtype=bool).reshape(-1, length)
                for step, masks in state["outstanding"].items()
            }
            # states from before screening existed hold no parents; screening was off for those runs (the
            # config, screening included, must match to resume), so nothing reads these stand-ins
            saved_parents = state.get("parents", {})
            run._parents = {
                step: (
                    np.array([decode_mask(m, length) for m in saved_parents[str(step)]], dtype=bool).reshape(
                        -1, length
                    )
                    if str(step) in saved_parents
                    else run._population.copy()
                )
                for step in run._outstanding
            }
            run._received = {
                int(step): _arrays_from_json(pair, length) for step, pair in state["received"].items()
            }
            run._rng.bit_generator.state = state["rng"]
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, SearchStateError):
                raise
            raise SearchStateError(f"unreadable search state: {error}") from None
        if "crowding" in state and run._jmetalpy:
            run._rank, run._crowding = _attributes_from_json(state, len(run._population))
        elif len(run._population):
            # deap's are a function of the population. A jmetalpy state always holds its own; one without
            # them predates the option, so its run used deap's and its fingerprint refuses a resume: the
            # recomputed values only serve readers of the population (the live fronts)
            run._rank, run._crowding = run._ranked()
        return run


def _arrays_to_json(masks: np.ndarray, objectives: np.ndarray, violation: np.ndarray) -> SavedArrays:
    data: SavedArrays = {"masks": [encode_mask(m) for m in masks], "objectives": objectives.tolist()}
    if np.any(violation):
        # only where something is infeasible, so unconstrained states read and compare as they always did
        data["violation"] = violation.tolist()
    return data


def _attributes_from_json(state: SearchState, size: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        rank = np.array(state["rank"], dtype=np.int64).reshape(-1)
        crowding = np.array(
            [np.inf if d is None else float(d) for d in state["crowding"]], dtype=np.float64
        ).reshape(-1)
    except (KeyError, TypeError, ValueError) as error:
        raise SearchStateError(f"unreadable stored ranks or crowding distances: {error}") from None
    if len(rank) != size or len(crowding) != size:
        raise SearchStateError("stored ranks or crowding distances do not match the population")
    return rank, crowding


def _arrays_from_json(data: SavedArrays, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    masks = np.array([decode_mask(m, length) for m in data["masks"]], dtype=bool).reshape(-1, length)
    objectives = np.array(data["objectives"], dtype=np.float64).reshape(-1, 3)
    violation = np.array(data.get("violation", [0.0] * len(masks)), dtype=np.float64).reshape(-1)
    if len(masks) != len(objectives) or len(violation) != len(masks):
        raise SearchStateError("saved masks, objectives and violations differ in number")
    if not np.all(np.isfinite(violation)) or np.any(violation < 0):
        raise SearchStateError("saved constraint violations must be finite and >= 0")
    return masks, objectives, violation
