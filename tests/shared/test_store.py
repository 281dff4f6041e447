import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from evoprune.shared.store import ExperimentRecord, FrontState, RunProgress, StoreError, StoreUnavailableError
from evoprune.shared.store_local import LocalStore

REPO = Path(__file__).resolve().parents[2]


def redis_url() -> str:
    import os

    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def store(request, tmp_path):
    if request.param == "local":
        yield LocalStore(tmp_path / "data")
        return
    from evoprune.shared.store_redis import RedisStore

    store = RedisStore(redis_url(), prefix=f"evoprune-test-{uuid.uuid4().hex}")
    try:
        yield store
    finally:
        store.delete_all()
        store.close()


def new_record(experiment_id: str, created_at: float = 1.0, **fields) -> ExperimentRecord:
    return ExperimentRecord(
        id=experiment_id,
        name="t",
        config={"name": "t"},
        results_dir="/tmp/x",
        created_at=created_at,
        runs=[RunProgress(run=0, seed=0, evaluations_total=10)],
        **fields,
    )


def ident(n: int) -> str:
    return f"{n:016x}"


def test_records_round_trip_and_list_newest_first(store):
    store.create(new_record(ident(1), created_at=10.0))
    store.create(new_record(ident(2), created_at=20.0))
    assert store.get(ident(1)) == new_record(ident(1), created_at=10.0)
    assert [r.id for r in store.records()] == [ident(2), ident(1)]
    with pytest.raises(StoreError, match="already exists"):
        store.create(new_record(ident(1)))
    assert store.get(ident(3)) is None
    assert store.get("../../etc/passwd") is None
    assert store.snapshot("nope") is None


def test_publish_appends_events_once_and_replaces_the_record(store):
    store.create(new_record(ident(1)))
    events = [(seq, {"type": "evaluation", "n": seq}) for seq in range(1, 6)]
    record = new_record(ident(1), status="running", evaluations_done=5, last_event_seq=5)
    front = FrontState(fronts={-1: {"points": [[0.9, 0.5, 0.8]], "masks": ["ff"], "hypervolume": 0.1}})
    assert store.publish(ident(1), events[:3], record, front)
    # a retry of a half-finished publish re-sends events that are already stored: they are skipped
    assert store.publish(ident(1), events, record)
    assert store.read_events(ident(1)) == events
    assert store.read_events(ident(1), after=3) == events[3:]
    assert store.read_events(ident(1), after=1, limit=2) == events[1:3]
    assert store.read_events(ident(1), after=5) == []
    snapshot = store.snapshot(ident(1))
    assert snapshot.record == record
    assert snapshot.front.fronts[-1]["masks"] == ["ff"]


def test_publish_refuses_a_lost_record_unless_told(store):
    record = new_record(ident(7), last_event_seq=1)
    assert store.publish(ident(7), [(1, {"type": "x"})], record) is False
    assert store.get(ident(7)) is None and store.read_events(ident(7)) == []
    assert store.publish(ident(7), [(1, {"type": "x"})], record, expect_existing=False)
    assert store.get(ident(7)) == record
    assert [r.id for r in store.records()] == [ident(7)]


def test_publish_refuses_a_record_whose_earlier_events_are_missing(store):
    # the API put the record back from its copy (no events) after the store lost everything: appending event
    # 17 would leave a follower from the start a stream beginning at 17
    store.create(new_record(ident(8)))
    record = new_record(ident(8), last_event_seq=17)
    assert store.publish(ident(8), [(17, {"type": "x"})], record) is False
    assert store.read_events(ident(8)) == [] and store.get(ident(8)).last_event_seq == 0
    everything = [(seq, {"type": "x", "n": seq}) for seq in range(1, 18)]
    assert store.publish(ident(8), everything, record, expect_existing=False)
    assert store.read_events(ident(8)) == everything
    # the next event follows on: no hole, accepted
    assert store.publish(ident(8), [(18, {"type": "x"})], new_record(ident(8), last_event_seq=18))


def test_event_ids_round_trip(store):
    for seq in (0, 1, 12345):
        assert store.parse_event_id(store.event_id(seq)) == seq
    for bad in ("", "abc", "-1", "1-2-3", "9" * 40):
        assert store.parse_event_id(bad) is None


def test_cancel_flag(store):
    store.create(new_record(ident(1)))
    assert not store.cancel_requested(ident(1))
    store.request_cancel(ident(1))
    assert store.cancel_requested(ident(1))
    assert not store.cancel_requested("zz")


def test_wait_events_returns_as_soon_as_one_arrives(store):
    store.create(new_record(ident(1)))

    def later():
        time.sleep(0.3)
        store.publish(ident(1), [(1, {"type": "x"})], new_record(ident(1), last_event_seq=1))

    thread = threading.Thread(target=later)
    started = time.monotonic()
    thread.start()
    assert store.wait_events(ident(1), 0, timeout_s=1.5) == [(1, {"type": "x"})]
    assert time.monotonic() - started < 1.2
    thread.join()
    assert store.wait_events(ident(1), 1, timeout_s=0.2) == []


def test_fitness_cache_is_shared(store):
    from evoprune.shared.objectives import Evaluation

    first, second = store.fitness_cache(), store.fitness_cache()
    try:
        first.put_many({"k": Evaluation(accuracy=0.5, active_fraction=0.25, auroc=0.75)})
        if store.kind == "redis":
            assert second.get_many(["k"])["k"].accuracy == 0.5
        else:  # the local cache file is read when opened
            assert store.fitness_cache().get_many(["k"])["k"].accuracy == 0.5
    finally:
        first.close()
        second.close()


WRITER = """
import sys
from evoprune.shared.store import ExperimentRecord
from evoprune.shared.store_local import LocalStore
store = LocalStore(sys.argv[1])
for seq in range(1, 301):
    record = ExperimentRecord(id=sys.argv[2], name="t", config={}, results_dir="", last_event_seq=seq)
    store.publish(sys.argv[2], [(seq, {"type": "evaluation", "seq": seq, "pad": "x" * (seq % 97)})], record)
"""


def test_local_store_is_read_safely_while_another_process_writes(tmp_path):
    store = LocalStore(tmp_path)
    store.create(new_record(ident(9)))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), ident(9)], cwd=REPO)
    seen, cursor = [], 0
    deadline = time.monotonic() + 60
    while cursor < 300 and time.monotonic() < deadline:
        for seq, data in store.read_events(ident(9), after=cursor, limit=7):
            assert data["seq"] == seq
            seen.append(seq)
            cursor = seq
        snapshot = store.snapshot(ident(9))
        assert snapshot.record.last_event_seq <= 300
    assert writer.wait(timeout=60) == 0
    assert seen == list(range(1, 301))


def test_unreachable_redis_is_a_clear_error():
    from evoprune.shared.store_redis import RedisStore

    store = RedisStore("redis://:secret@127.0.0.1:1/0", prefix="x")
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:1") as caught:
        store.get(ident(1))
    assert "secret" not in str(caught.value)
