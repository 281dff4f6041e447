"""The index of active experiments: the cap counted from it, kept by publish, built once for older stores."""

import threading

import pytest

from evoprune.shared.events import ExperimentStatus
from evoprune.shared.store import TooManyActiveError
from tests.shared.test_store import ident, new_record, store  # noqa: F401  (the fixture)

CAP = 5
THREADS = 30
JOIN_S = 60


def test_concurrent_creations_stop_at_the_cap(store):  # noqa: F811
    start = threading.Barrier(THREADS)
    outcomes: list[str] = []

    def create(n):
        start.wait(timeout=JOIN_S)
        try:
            store.create(new_record(ident(n)), max_active=CAP)
            outcomes.append("created")
        except TooManyActiveError as error:
            assert error.active == CAP and error.limit == CAP
            outcomes.append("refused")

    threads = [threading.Thread(target=create, args=(n,), daemon=True) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_S)
    assert outcomes.count("created") == CAP and outcomes.count("refused") == THREADS - CAP
    assert len(store.active_ids()) == CAP


def test_an_ended_experiment_leaves_the_index_and_frees_its_place(store):  # noqa: F811
    for n in range(CAP):
        store.create(new_record(ident(n)), max_active=CAP)
    with pytest.raises(TooManyActiveError):
        store.create(new_record(ident(CAP)), max_active=CAP)
    ended = store.get(ident(0))
    ended.status = ExperimentStatus.SUCCEEDED
    store.publish(ended.id, [], ended)
    assert ident(0) not in store.active_ids()
    store.create(new_record(ident(CAP)), max_active=CAP)
    assert len(store.active_ids()) == CAP


def test_a_store_from_before_the_index_is_indexed_from_its_records(store):  # noqa: F811
    store.create(new_record(ident(1)))
    store.create(new_record(ident(2), status="failed"))
    # forget the index, as a store written by a version without it
    if store.kind == "redis":
        store._client.delete(store._active_key, f"{store._active_key}:built")
    else:
        active = store._root / "active"
        if active.is_dir():
            for marker in active.iterdir():
                marker.unlink()
            active.rmdir()
    with pytest.raises(TooManyActiveError):
        store.create(new_record(ident(3)), max_active=1)
    assert store.active_ids() == [ident(1)]
