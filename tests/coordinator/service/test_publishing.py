"""Publishing to the store: events kept in order through an outage, and the live view they build."""

import uuid
from pathlib import Path

import pytest

from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.service.publishing import StorePublisher
from evoprune.coordinator.service.records import restore_lost_records, write_record_copy
from evoprune.shared.events import ExperimentStatus, RunFinished, StatusChanged
from evoprune.shared.store_redis import RedisStore
from tests.coordinator.service.test_runner import FlakyStore, all_events, new_experiment
from tests.shared.test_store import redis_url


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


@pytest.mark.redis
def test_a_record_put_back_from_its_copy_gets_its_whole_stream_again(tmp_path):
    # seen in the slow tier: Redis restarted empty, the API's next GET put the record back from the copy POST
    # wrote (no events), and the runner's next events were appended to it: a follower from the start saw
    # events from 17 on. The store now refuses that append as lost, and the publisher sends everything again.
    store = RedisStore(redis_url(), prefix=f"evoprune-test-{uuid.uuid4().hex}")
    try:
        spec = new_experiment(store, tmp_path)
        snapshot = store.snapshot(spec.experiment_id)
        write_record_copy(ResultsLayout(Path(snapshot.record.results_dir)), snapshot.record, snapshot.front)
        publisher = StorePublisher(store, snapshot.record, snapshot.front)
        publisher(StatusChanged(status=ExperimentStatus.RUNNING, started_at=1.0))
        publisher(RunFinished(run=0, hypervolume=0.5, evaluations=24, cache_hits=0))
        assert publisher.flush()
        store.delete_all()  # what a restart without persistence leaves
        assert restore_lost_records(store, spec.store, only=spec.experiment_id) == [spec.experiment_id]
        publisher(RunFinished(run=1, hypervolume=0.6, evaluations=24, cache_hits=0))
        assert publisher.flush()
        events = all_events(store, spec.experiment_id)
        assert [seq for seq, _ in events] == [1, 2, 3]
        assert [data["type"] for _, data in events] == ["status", "run-finished", "run-finished"]
        assert store.get(spec.experiment_id).last_event_seq == 3
    finally:
        store.delete_all()
        store.close()
