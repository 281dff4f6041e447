"""Removing ended experiments from either store, and creating records without reading the ended ones."""

import pytest

from evoprune.shared.events import ExperimentStatus
from evoprune.shared.store import ExperimentActiveError
from tests.shared.test_store import ident, new_record, store  # noqa: F401  (the fixture)

ENDED = 200


def ended(store, n, status="failed"):  # noqa: F811
    record = new_record(ident(n))
    store.create(record)
    record.status = ExperimentStatus(status)
    record.last_event_seq = 1
    store.publish(record.id, [(1, {"type": status})], record)
    return record


def test_an_ended_experiment_is_removed_whole(store):  # noqa: F811
    kept = ended(store, 1)
    gone = ended(store, 2, "cancelled")
    store.request_cancel(gone.id)
    assert store.delete(gone.id) is True
    assert store.get(gone.id) is None and store.snapshot(gone.id) is None
    assert store.read_events(gone.id) == [] and not store.cancel_requested(gone.id)
    assert [record.id for record in store.records()] == [kept.id]
    if store.kind == "redis":
        assert list(store._client.scan_iter(match=f"{store.prefix}:exp:{gone.id}*")) == []
        assert store._client.zscore(store._index_key, gone.id) is None
    else:
        assert not (store._root / gone.id).exists() and not list(store._root.glob(".deleted-*"))
    assert store.delete(gone.id) is False
    assert store.delete("not-an-id") is False
    # the id is free again, and nothing of the old one shows through
    store.create(new_record(gone.id))
    assert store.read_events(gone.id) == [] and store.get(gone.id).status == "queued"


def test_an_active_experiment_is_refused_and_kept(store):  # noqa: F811
    store.create(new_record(ident(1)))
    with pytest.raises(ExperimentActiveError, match="is queued; cancel it"):
        store.delete(ident(1))
    assert store.get(ident(1)) is not None and store.active_ids() == [ident(1)]


def test_a_new_record_is_created_without_reading_the_ended_ones(store):  # noqa: F811
    store.create(new_record(ident(0)), max_active=10)  # the active index exists from here on
    for n in range(1, ENDED + 1):
        ended(store, n)
    # damage every ended record: reading any of them would fail the creation below
    for n in range(1, ENDED + 1):
        if store.kind == "redis":
            store._client.hset(store._key(ident(n)), "record", "{not json")
        else:
            (store._root / ident(n) / "record.json").write_text("{not json")
    store.create(new_record(ident(ENDED + 1)), max_active=10)
    assert store.active_ids() == [ident(0), ident(ENDED + 1)]
