import json
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from evoprune.coordinator.assembly import Backend
from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.service.records import restore_lost_records, write_record_copy
from evoprune.coordinator.service.runner import RunnerSpec, run_service_experiment
from evoprune.shared.store import (
    ExperimentRecord,
    FrontState,
    RunProgress,
    StoreSpec,
    StoreUnavailableError,
)
from evoprune.shared.store_local import LocalStore
from tests.coordinator.fakes import FakeProblem, fake_feature_set

SEARCH = {"population_size": 8, "max_evaluations": 24, "runs": 2, "seed": 3}


class Interrupt(BaseException):
    """Stands for the runner process dying: not an Exception, so nothing on the way catches it."""


class CountingProblem(FakeProblem):
    def __init__(self, delay_s=0.0, die_after=None):
        super().__init__(length=64, delay_s=delay_s)
        self.calls = 0
        self.die_after = die_after

    def evaluate(self, masks, worker="fake"):
        self.calls += 1
        if self.die_after is not None and self.calls > self.die_after:
            raise Interrupt
        return super().evaluate(masks, worker)


def fake_features(config, settings):
    return fake_feature_set(64)


def backend_for(problem):
    return Backend(
        load_features=fake_features,
        make_evaluator=lambda feature_set, config, settings: InProcessEvaluator(problem),
    )


class FlakyStore(LocalStore):
    """The local store with an off switch: our own collaborator, to test the publisher's outage path."""

    down = False

    def publish(self, *args, **kwargs):
        if self.down:
            raise StoreUnavailableError("switched off by the test")
        return super().publish(*args, **kwargs)


def new_experiment(store, tmp_path, experiment_id="00000000000000aa", **search):
    search = {**SEARCH, **search}
    record = ExperimentRecord(
        id=experiment_id,
        name="fake",
        config={"name": "fake", "search": search},
        results_dir=str(tmp_path / "results" / experiment_id),
        evaluations_total=search["runs"] * search["max_evaluations"],
        runs=[
            RunProgress(run=r, seed=search["seed"] + r, evaluations_total=search["max_evaluations"])
            for r in range(search["runs"])
        ],
    )
    store.create(record)
    return RunnerSpec(experiment_id=experiment_id, store=StoreSpec(data_dir=str(tmp_path)))


def all_events(store, experiment_id):
    return store.read_events(experiment_id, 0, limit=100_000)


def test_a_runner_publishes_the_whole_experiment(tmp_path):
    store = LocalStore(tmp_path)
    spec = new_experiment(store, tmp_path)
    assert run_service_experiment(spec, backend_for(CountingProblem()), store) == "succeeded"
    record = store.get(spec.experiment_id)
    results = tmp_path / "results" / spec.experiment_id
    summary = json.loads((results / "summary.json").read_text())
    assert (
        record.status == "succeeded" and record.evaluations_done == 48 == summary["aggregate"]["evaluations"]
    )
    assert record.hypervolume == pytest.approx(summary["aggregate"]["hypervolume_archive"])
    assert [run.evaluations_done for run in record.runs] == [24, 24] and all(r.finished for r in record.runs)
    assert record.cache_hits == summary["aggregate"]["cache_hits"] and record.mask_length == 64
    assert record.started_at is not None and record.finished_at >= record.started_at
    events = all_events(store, spec.experiment_id)
    kinds = [data["type"] for _, data in events]
    assert kinds[0] == "status" and kinds[-1] == "succeeded" and kinds.count("evaluation") == 48
    assert [seq for seq, _ in events] == list(range(1, len(events) + 1)) and record.last_event_seq == len(
        events
    )
    evaluations = [data for _, data in events if data["type"] == "evaluation"]
    assert [e["evaluations_done"] for e in evaluations] == list(range(1, 49))
    parquet = pq.read_table(results / "evaluations.parquet").to_pylist()
    assert sorted((e["run"], e["step"], e["mask"]) for e in evaluations) == sorted(
        (r["run"], r["step"], r["mask"]) for r in parquet
    )
    front = store.snapshot(spec.experiment_id).front
    assert set(front.fronts) == {-1, 0, 1} and front.history[-1][1] == pytest.approx(record.hypervolume)
    # the results directory keeps a copy of the final record and fronts, for a store that loses them
    empty = LocalStore(tmp_path / "empty")
    assert restore_lost_records(empty, spec.store) == [spec.experiment_id]
    assert empty.get(spec.experiment_id) == record
    assert empty.snapshot(spec.experiment_id).front == front
    assert restore_lost_records(empty, spec.store) == []


def test_a_runner_whose_store_lost_the_new_record_starts_from_the_submissions_copy(tmp_path):
    # found by the fault matrix (tests/faults): Redis restarted empty between a submission and its runner's
    # first read; the runner gave up ("the store has no experiment") and the experiment vanished (404)
    submitted = LocalStore(tmp_path)
    spec = new_experiment(submitted, tmp_path)
    record = submitted.get(spec.experiment_id)
    write_record_copy(ResultsLayout(Path(record.results_dir)), record, FrontState())  # as POST does
    emptied = LocalStore(tmp_path / "restarted-empty")
    assert run_service_experiment(spec, backend_for(CountingProblem()), emptied) == "succeeded"
    restored = emptied.get(spec.experiment_id)
    assert restored.status == "succeeded" and restored.evaluations_done == 48


def test_cancel_stops_at_the_next_step_and_keeps_the_results(tmp_path):
    store = LocalStore(tmp_path)
    spec = new_experiment(store, tmp_path, max_evaluations=400, population_size=8)
    problem = CountingProblem(delay_s=0.02)
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.setdefault("status", run_service_experiment(spec, backend_for(problem), store))
    )
    thread.start()
    while problem.calls < 5:
        time.sleep(0.01)
    store.request_cancel(spec.experiment_id)
    asked = time.monotonic()
    thread.join(timeout=30)
    assert outcome["status"] == "cancelled" and time.monotonic() - asked < 5
    calls_at_stop = problem.calls
    time.sleep(0.2)
    assert problem.calls == calls_at_stop
    record = store.get(spec.experiment_id)
    assert record.status == "cancelled" and 0 < record.evaluations_done < 800
    rows = pq.read_table(tmp_path / "results" / spec.experiment_id / "evaluations.parquet").num_rows
    assert rows == record.evaluations_done
    assert all_events(store, spec.experiment_id)[-1][1]["type"] == "cancelled"


def test_a_restarted_runner_resumes_and_publishes_what_the_store_missed(tmp_path):
    store = FlakyStore(tmp_path)
    spec = new_experiment(store, tmp_path)
    spec = RunnerSpec(experiment_id=spec.experiment_id, store=spec.store, final_publish_deadline_s=0.0)
    dying = CountingProblem(die_after=6)
    # the store goes away, then the runner dies: what it computed meanwhile is only in its journal

    def outage_then_death(feature_set, config, settings):
        evaluator = InProcessEvaluator(dying)
        original = evaluator.submit

        def submit(masks):
            if dying.calls >= 3:
                store.down = True
            return original(masks)

        evaluator.submit = submit
        return evaluator

    with pytest.raises(Interrupt):
        run_service_experiment(spec, Backend(fake_features, outage_then_death), store)
    seen = store.get(spec.experiment_id).evaluations_done
    checkpoint = json.loads(
        (tmp_path / "results" / spec.experiment_id / "state" / "checkpoint.json").read_text()
    )
    assert seen < checkpoint["rows"]
    store.down = False
    assert run_service_experiment(spec, backend_for(CountingProblem()), store) == "succeeded"
    events = all_events(store, spec.experiment_id)
    evaluations = [data for _, data in events if data["type"] == "evaluation"]
    assert len(evaluations) == 48
    assert [e["evaluations_done"] for e in evaluations] == list(range(1, 49))
    assert [seq for seq, _ in events] == list(range(1, len(events) + 1))
    parquet = pq.read_table(tmp_path / "results" / spec.experiment_id / "evaluations.parquet").to_pylist()
    assert sorted((e["run"], e["step"], e["mask"]) for e in evaluations) == sorted(
        (r["run"], r["step"], r["mask"]) for r in parquet
    )
    assert store.get(spec.experiment_id).status == "succeeded"


def test_a_failing_experiment_ends_failed_with_its_message(tmp_path):
    store = LocalStore(tmp_path)
    spec = new_experiment(store, tmp_path)

    def broken(config, settings):
        raise ValueError("the dataset cannot be loaded: folder:/nowhere does not exist")

    assert run_service_experiment(spec, Backend(broken, backend_for(None).make_evaluator), store) == "failed"
    record = store.get(spec.experiment_id)
    assert record.status == "failed" and "folder:/nowhere" in record.error
    assert all_events(store, spec.experiment_id)[-1][1]["type"] == "failed"
