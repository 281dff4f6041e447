"""The API's watch over runners: one gone for good is relaunched once, then its experiment ends failed."""

from evoprune.coordinator.service.recovery import RunnerWatch
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.store_local import LocalStore
from tests.api.conftest import RecordingLauncher
from tests.coordinator.service.test_runner import all_events, new_experiment


def running(store, spec):
    record = store.get(spec.experiment_id)
    record.status = ExperimentStatus.RUNNING
    store.publish(record.id, [], record)
    return record


def test_a_runner_gone_for_good_is_relaunched_once_then_its_experiment_ends_failed(tmp_path):
    store = LocalStore(tmp_path)
    spec = new_experiment(store, tmp_path)
    running(store, spec)
    launcher = RecordingLauncher()
    launcher.running.add(spec.experiment_id)
    watch = RunnerWatch(store, launcher, misses=2, relaunches=1)
    assert watch.check() == [] and launcher.launched == []  # alive
    launcher.running.clear()  # Ray gave up on it
    assert watch.check() == []  # one miss: perhaps starting
    assert watch.check() == [spec.experiment_id] and launcher.launched == [spec.experiment_id]
    assert store.get(spec.experiment_id).status == "running"
    launcher.running.clear()  # the relaunched runner dies for good too
    assert watch.check() == [] and watch.check() == [spec.experiment_id]
    assert launcher.launched == [spec.experiment_id]  # not launched a second time
    record = store.get(spec.experiment_id)
    assert record.status == "failed" and f"evoprune resume {record.results_dir}" in record.error
    assert all_events(store, spec.experiment_id)[-1][1]["type"] == "failed"
    assert watch.check() == []  # ended: no longer watched


def test_a_runner_seen_again_between_looks_is_left_alone(tmp_path):
    store = LocalStore(tmp_path)
    spec = new_experiment(store, tmp_path)
    running(store, spec)
    launcher = RecordingLauncher()
    watch = RunnerWatch(store, launcher, misses=2)
    assert watch.check() == []  # a miss: its launch may be under way
    launcher.running.add(spec.experiment_id)
    assert watch.check() == []
    launcher.running.clear()
    assert watch.check() == []  # the count started again
    assert launcher.launched == [] and store.get(spec.experiment_id).status == "running"
