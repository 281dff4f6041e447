"""One experiment: N NSGA-II runs side by side sharing an evaluator and a fitness cache; resumable."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from evoprune.coordinator.constraints import Constraints
from evoprune.coordinator.evaluator_interface import Evaluator
from evoprune.coordinator.nsga2 import NSGA2, SearchStateError
from evoprune.coordinator.results.checkpoint import Checkpoint, CheckpointError, Journal
from evoprune.coordinator.results.directory import ExperimentError, experiment_fingerprint
from evoprune.coordinator.results.fronts import AGGREGATE_RUN
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.results.summary import RunInfo, Summary
from evoprune.coordinator.results.writer import EvaluationRecord, write_config, write_results
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.evaluation_row import EvaluationRow
from evoprune.shared.events import (
    EventBus,
    ExperimentCancelled,
    ExperimentFailed,
    ExperimentStatus,
    ExperimentSucceeded,
    FrontChanged,
    RunFinished,
)
from evoprune.shared.fitness_cache import FitnessCache, LocalFitnessCache
from evoprune.shared.masks import encode_mask, fitness_key
from evoprune.shared.objectives import Evaluation
from evoprune.shared.pareto import ParetoArchive
from evoprune.shared.screening import ScreeningRequest, ScreeningRule, screening_epochs
from evoprune.shared.storage import StoragePath, storage_path

STOP_POLL_S = 1.0


@dataclass
class _Slot:
    key: str
    mask: str
    bits: np.ndarray
    cached: bool = True
    evaluation: Evaluation | None = None


@dataclass
class _PendingStep:
    run: int
    step: int
    slots: list[_Slot]
    parents: np.ndarray  # the population the step was bred from: the reference its masks are screened by

    @property
    def ready(self) -> bool:
        return all(slot.evaluation is not None for slot in self.slots)


@dataclass
class _Run:
    index: int
    seed: int
    search: NSGA2
    archive: ParetoArchive = field(default_factory=ParetoArchive)
    evaluations: int = 0
    cache_hits: int = 0


class Experiment:
    """Runs (or resumes) every run of one experiment to completion against one evaluator.

    Masks from all runs are resolved against the experiment's own record and the fitness cache, then the
    rest go to the evaluator together. Synchronous search moves all runs one step at a time (a round), so
    which duplicate is trained and which is a hit is the same whatever the worker count. Every completed
    step is journaled and checkpointed before the next one is asked.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        results_dir: StoragePath,
        feature_key: str,
        mask_length: int,
        evaluator: Evaluator,
        bus: EventBus | None = None,
        cache: FitnessCache | None = None,
        constraints: Constraints | None = None,
    ) -> None:
        if constraints is None and config.search.constraints.on_head_size:
            raise ExperimentError(
                "search.constraints sets a head budget: the experiment needs the head's layout "
                "(Constraints.of(config, input_dim, num_classes))"
            )
        if constraints is None and config.search.constraints.active:
            constraints = Constraints(config.search.constraints)
        self.config = config
        self.constraints = constraints
        self.results_dir = storage_path(results_dir)
        self.feature_key = feature_key
        self.mask_length = mask_length
        self.evaluator = evaluator
        self.bus = bus or EventBus()
        self.layout = ResultsLayout(self.results_dir)
        self._protocol = config.protocol_fingerprint()
        # the ledger holds what this experiment trained itself; it is what makes a resumed row equal the
        # uninterrupted one (trained, not a cache hit) and guarantees nothing is trained twice
        self._ledger = LocalFitnessCache(self.layout.ledger)
        self._cache = cache if cache is not None else self._ledger
        self._journal = Journal(self.layout.journal)
        self._aggregate = ParetoArchive()
        self._runs: list[_Run] = []
        self._pending: list[_PendingStep] = []
        self._known: dict[str, Evaluation] = {}
        self._claimed: set[str] = set()
        self._queued: dict[str, np.ndarray] = {}
        self._queued_parents: dict[str, np.ndarray] = {}  # the parents of the slot that queued each key
        self._screening_epochs = screening_epochs(config.search.screening, config.training)
        self._waiters: dict[str, list[_Slot]] = {}
        self._tickets: dict[int, list[str]] = {}
        self._elapsed_before_s = 0.0
        self._started = time.monotonic()
        self._resumed_rows = 0
        self._wait_slice_s: float | None = None

    # ---- set-up ---------------------------------------------------------------------------------------

    @property
    def total_evaluations(self) -> int:
        """Evaluations all runs will have used at the end."""
        return self.config.search.runs * self.config.search.max_evaluations

    @property
    def evaluations_done(self) -> int:
        """Evaluations already recorded (non-zero after a resume)."""
        return sum(run.evaluations for run in self._runs)

    def start(self) -> None:
        """Initialise a fresh experiment in an empty or new results directory."""
        self.results_dir.mkdir(parents=True, exist_ok=True)
        write_config(self.results_dir, self.config)
        search = self.config.search
        self._runs = [
            _Run(
                index=run,
                seed=search.seed + run,
                search=NSGA2(self.mask_length, search, search.seed + run, self.constraints),
            )
            for run in range(search.runs)
        ]
        self._checkpoint(ExperimentStatus.RUNNING)

    def restore(self, checkpoint: Checkpoint) -> list[EvaluationRow]:
        """Continues from a checkpoint read by `load_resumable`.

        Args:
            checkpoint: the saved checkpoint.

        Returns:
            The journal rows the checkpoint vouches for (read once, here; the service publishes them).

        Raises:
            ExperimentError: the checkpoint does not fit these features or is inconsistent.

        """
        if checkpoint.feature_key != self.feature_key or checkpoint.mask_length != self.mask_length:
            raise ExperimentError(
                f"{self.results_dir} was computed on other features ({checkpoint.feature_key}) than "
                f"the ones its config now yields ({self.feature_key}); it cannot be resumed."
            )
        search = self.config.search
        try:
            rows = [
                EvaluationRow.from_dict(line)
                for line in self._journal.load(checkpoint.rows, checkpoint.journal_sha256)
            ]
            self._runs = [
                _Run(
                    index=run,
                    seed=search.seed + run,
                    search=NSGA2.from_state(state, search, self.constraints),
                )
                for run, state in enumerate(checkpoint.runs)
            ]
        except (CheckpointError, SearchStateError) as error:
            raise ExperimentError(f"{self.results_dir} is corrupt and cannot be resumed: {error}") from None
        self._elapsed_before_s = checkpoint.elapsed_s
        for row in rows:
            run = self._runs[row.run]
            run.evaluations += 1
            run.cache_hits += bool(row.cached)
            self._known.setdefault(row.key, row.evaluation())
            self._claimed.add(row.key)
            if not row.full_fidelity:
                continue
            point = np.array([row.minimisation()])
            run.archive.add(point, [row.mask])
            self._aggregate.add(point, [row.mask])
        self._resumed_rows = len(rows)
        # steps asked before the interruption are resolved again, in the order they were first asked
        for run in self._runs:
            for step, masks in sorted(run.search.outstanding.items()):
                self._pending.append(self._new_pending(run.index, step, masks, run.search.parents_of(step)))
        self._resolve(self._pending)
        return rows

    # ---- the loop -------------------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool] | None = None) -> Summary:
        """Run every run to the end (or until `should_stop` says so) and write the results.

        Args:
            should_stop: polled between steps; when it returns True the experiment stops, writes the
                results so far, checkpoints as "cancelled" (resumable) and emits `ExperimentCancelled`.

        Returns:
            The summary (as written to summary.json); its status is "succeeded" or "cancelled".

        """
        self._started = time.monotonic()
        # with a stop signal, waiting on workers is sliced so a cancel is seen within a second, not after
        # a whole batch of 600-epoch trainings
        self._wait_slice_s = STOP_POLL_S if should_stop is not None else None
        try:
            while not all(run.search.done for run in self._runs):
                if should_stop is not None and should_stop():
                    return self._cancel()
                self._step_loop_once()
            summary = self._finish()
        except Exception as error:
            self.bus.emit(ExperimentFailed(message=f"{type(error).__name__}: {error}"))
            raise
        return summary

    def _step_loop_once(self) -> None:
        asked = self._ask()
        if asked:
            self._resolve(asked)
        self._submit()
        if self._complete_ready():
            return
        if self._tickets:
            self._deliver(self.evaluator.wait(timeout_s=self._wait_slice_s))
        elif not asked and not self._queued:
            raise RuntimeError("the search stalled: nothing to ask, evaluate or tell")

    def _ask(self) -> list[_PendingStep]:
        if not self.config.search.asynchronous and self._pending:
            return []  # synchronous rounds: every run's step is told before any run asks again
        asked = []
        for run in self._runs:
            while run.search.can_ask():
                step = run.search.ask()
                asked.append(self._new_pending(run.index, step.step, step.masks, step.parents))
        self._pending.extend(asked)
        return asked

    def _new_pending(self, run: int, step: int, masks: np.ndarray, parents: np.ndarray) -> _PendingStep:
        slots = [
            _Slot(key=fitness_key(self.feature_key, self._protocol, mask), mask=encode_mask(mask), bits=mask)
            for mask in masks
        ]
        return _PendingStep(run=run, step=step, slots=slots, parents=parents)

    def _resolve(self, steps: list[_PendingStep]) -> None:
        """Decides, in ask order, which slots are trained, which are hits and which wait for a twin."""
        slots = [slot for pending in steps for slot in pending.slots]
        parents_of = {id(slot): pending.parents for pending in steps for slot in pending.slots}
        unclaimed = list(dict.fromkeys(slot.key for slot in slots if slot.key not in self._claimed))
        from_ledger = self._ledger.get_many(unclaimed)
        remaining = [key for key in unclaimed if key not in from_ledger]
        from_cache = self._cache.get_many(remaining) if self._cache is not self._ledger else {}
        for slot in slots:
            if slot.key in self._claimed:
                slot.cached = True
            else:
                self._claimed.add(slot.key)
                if slot.key in from_ledger:
                    slot.cached = False
                    self._known[slot.key] = from_ledger[slot.key]
                elif slot.key in from_cache:
                    slot.cached = True
                    self._known[slot.key] = from_cache[slot.key]
                else:
                    slot.cached = False
                    self._queued[slot.key] = slot.bits
                    self._queued_parents[slot.key] = parents_of[id(slot)]
            if slot.key in self._known:
                slot.evaluation = self._known[slot.key]
            else:
                self._waiters.setdefault(slot.key, []).append(slot)

    def _submit(self) -> None:
        if not self._queued:
            return
        if self.config.search.asynchronous and self._tickets and self.evaluator.idle_workers() == 0:
            return  # keep collecting: the next idle worker gets a larger batch
        keys = list(self._queued)
        masks = np.stack([self._queued[key] for key in keys])
        screening = self._screening_request([self._queued_parents[key] for key in keys])
        self._queued, self._queued_parents = {}, {}
        # without screening the call is the one every evaluator has always taken
        if screening is None:
            ticket = self.evaluator.submit(masks)
        else:
            ticket = self.evaluator.submit(masks, screening)
        self._tickets[ticket] = keys

    def _screening_request(self, parents: list[np.ndarray]) -> ScreeningRequest | None:
        """Each mask's reference set: its parents' objectives at the screening budget (none: not screened).

        Every parent was told before its offspring were asked, so its evaluation is known here; the set is
        fixed at ask time, so a mask's fate does not depend on when a worker got to it.
        """
        budget = self._screening_epochs
        if budget is None:
            return None
        references: list[np.ndarray] = []
        seen: dict[int, int] = {}
        assignment = []
        for population in parents:
            if len(population) == 0:
                assignment.append(-1)  # the initial population: nothing to be judged against
                continue
            if id(population) not in seen:
                seen[id(population)] = len(references)
                keys = [fitness_key(self.feature_key, self._protocol, mask) for mask in population]
                vectors = [self._known[key].screening_minimisation(budget) for key in keys]
                references.append(np.array(vectors, dtype=np.float64).reshape(-1, 3))
            assignment.append(seen[id(population)])
        return ScreeningRequest(
            budget, ScreeningRule.of(self.config.search.screening), tuple(references), np.array(assignment)
        )

    def _deliver(self, finished: dict[int, list[Evaluation]]) -> None:
        fresh: dict[str, Evaluation] = {}
        for ticket, evaluations in finished.items():
            keys = self._tickets.pop(ticket)
            fresh.update(zip(keys, evaluations, strict=True))
        if not fresh:
            return
        self._ledger.put_many(fresh)
        if self._cache is not self._ledger:
            # a screened-out mask's short-budget objectives stay in this experiment's own ledger (marked
            # by their fidelity); a shared cache only ever holds the full protocol's
            full = {key: evaluation for key, evaluation in fresh.items() if evaluation.full_fidelity}
            if full:
                self._cache.put_many(full)
        for key, evaluation in fresh.items():
            self._known[key] = evaluation
            for slot in self._waiters.pop(key, []):
                slot.evaluation = evaluation

    def _complete_ready(self) -> bool:
        ready = sorted((p for p in self._pending if p.ready), key=lambda p: (p.run, p.step))
        if not ready:
            return False
        self._pending = [p for p in self._pending if not p.ready]
        rows = []
        for pending in ready:
            run = self._runs[pending.run]
            evaluations = [slot.evaluation for slot in pending.slots if slot.evaluation is not None]
            run.search.tell(pending.step, evaluations)
            rows.extend(self._rows(pending))
        self._journal.append([row.to_dict() for row in rows])
        self._checkpoint(ExperimentStatus.RUNNING)
        self._announce(ready, rows)
        return True

    def _rows(self, pending: _PendingStep) -> list[EvaluationRow]:
        rows = []
        for slot_index, slot in enumerate(pending.slots):
            evaluation = slot.evaluation
            assert evaluation is not None
            rows.append(
                EvaluationRow(
                    run=pending.run,
                    step=pending.step,
                    slot=slot_index,
                    key=slot.key,
                    mask=slot.mask,
                    mask_length=self.mask_length,
                    accuracy=evaluation.accuracy,
                    active_fraction=evaluation.active_fraction,
                    auroc=evaluation.auroc,
                    cached=slot.cached,
                    seconds=0.0 if slot.cached else evaluation.seconds,
                    worker="" if slot.cached else evaluation.worker,
                    test_accuracy=evaluation.test_accuracy,
                    test_auroc=evaluation.test_auroc,
                    epochs=evaluation.epochs,
                    fidelity=evaluation.fidelity,
                    screen_accuracy=evaluation.screen_accuracy,
                    screen_auroc=evaluation.screen_auroc,
                    screen_epochs=evaluation.screen_epochs,
                )
            )
        return rows

    def _announce(self, ready: list[_PendingStep], rows: list[EvaluationRow]) -> None:
        changed_runs = set()
        aggregate_changed = False
        for row in rows:
            run = self._runs[row.run]
            run.evaluations += 1
            run.cache_hits += bool(row.cached)
            self.bus.emit(row.event())
            if not row.full_fidelity:
                continue  # fronts hold the full protocol's objectives only
            point = np.array([row.minimisation()])
            if run.archive.add(point, [row.mask]):
                changed_runs.add(run.index)
            aggregate_changed |= self._aggregate.add(point, [row.mask])
        for index in sorted(changed_runs):
            run = self._runs[index]
            self.bus.emit(FrontChanged.of_archive(index, run.archive, run.evaluations))
        if aggregate_changed:
            self.bus.emit(FrontChanged.of_archive(AGGREGATE_RUN, self._aggregate, self.evaluations_done))
        for index in sorted({p.run for p in ready}):
            run = self._runs[index]
            if run.search.done:
                self.bus.emit(
                    RunFinished(
                        run=index,
                        hypervolume=run.archive.hypervolume,
                        evaluations=run.evaluations,
                        cache_hits=run.cache_hits,
                    )
                )

    # ---- persistence ----------------------------------------------------------------------------------

    def _elapsed_s(self) -> float:
        return self._elapsed_before_s + time.monotonic() - self._started

    def _checkpoint(self, status: ExperimentStatus) -> None:
        Checkpoint(
            fingerprint=experiment_fingerprint(self.config),
            status=status,
            feature_key=self.feature_key,
            mask_length=self.mask_length,
            rows=self._journal.count,
            journal_sha256=self._journal.sha256,
            elapsed_s=self._elapsed_s(),
            runs=tuple(run.search.state_dict() for run in self._runs),
        ).write(self.layout.checkpoint)

    def _cancel(self) -> Summary:
        # work in flight is abandoned, not waited for: what finished is journaled, the rest is re-asked
        # from the checkpoint on resume
        summary = self._write_results(ExperimentStatus.CANCELLED)
        self._checkpoint(ExperimentStatus.CANCELLED)
        self.bus.emit(
            ExperimentCancelled(evaluations=self.evaluations_done, results_dir=str(self.results_dir))
        )
        return summary

    def _finish(self) -> Summary:
        summary = self._write_results(ExperimentStatus.SUCCEEDED)
        self._checkpoint(ExperimentStatus.SUCCEEDED)
        self.bus.emit(
            ExperimentSucceeded(
                # the live events follow the archive fronts, so the last one carries the archive's volume
                hypervolume=summary.aggregate.hypervolume_archive,
                evaluations=summary.aggregate.evaluations,
                cache_hits=summary.aggregate.cache_hits,
                seconds=summary.wall_time_s,
                results_dir=str(self.results_dir),
            )
        )
        return summary

    def _write_results(self, status: ExperimentStatus) -> Summary:
        # the journal's lines are `EvaluationRow.to_dict()`s: the record's keys, as written
        rows = cast(list[EvaluationRecord], self._journal.load(self._journal.count))
        return write_results(
            self.results_dir,
            self.config,
            rows,
            RunInfo(
                status=status.value,
                wall_time_s=round(self._elapsed_s(), 3),
                resumed_with_rows=self._resumed_rows,
                feature_set=self.feature_key,
                protocol=self._protocol,
                mask_length=self.mask_length,
                fingerprint=experiment_fingerprint(self.config),
                evaluator=dict(self.evaluator.describe()),
                fitness_cache=self._cache.describe(),
            ),
            {run.index: [encode_mask(mask) for mask in run.search.population()[0]] for run in self._runs},
            constraints=self.constraints,
        )
