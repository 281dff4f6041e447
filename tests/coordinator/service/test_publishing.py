"""Publishing to the store: events kept in order through an outage, and the live view they build."""

from evoprune.coordinator.service.publishing import StorePublisher
from evoprune.shared.events import ExperimentStatus, RunFinished, StatusChanged
from tests.coordinator.service.test_runner import FlakyStore, all_events, new_experiment


def test_publisher_keeps_events_through_an_outage(tmp_path):
    store = FlakyStore(tmp_path)
    spec = new_experiment(store, tmp_path)
    snapshot = store.snapshot(spec.experiment_id)
    publisher = StorePublisher(store, snapshot.record, snapshot.front)
    publisher(StatusChanged(status=ExperimentStatus.RUNNING, started_at=1.0))
    assert publisher.flush()
    store.down = True
    publisher(RunFinished(run=0, hypervolume=0.5, evaluations=24, cache_hits=0))
    assert not publisher.flush() and publisher.outage_since is not None
    store.down = False
    assert publisher.flush() and publisher.outage_since is None
    assert [data["type"] for _, data in all_events(store, spec.experiment_id)] == ["status", "run-finished"]
    assert store.get(spec.experiment_id).runs[0].finished
