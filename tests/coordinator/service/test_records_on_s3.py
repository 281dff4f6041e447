"""Record copies and removal of experiments whose results root is on object storage (moto's S3 server)."""

from __future__ import annotations

import pyarrow.fs as pafs
import pytest

from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.service.records import (
    DELETED_PREFIX,
    lost_record_ids,
    remove_experiment,
    restore_lost_records,
    write_record_copy,
)
from evoprune.shared.storage import storage_path
from evoprune.shared.store import ExperimentActiveError, ExperimentRecord, FrontState, StoreSpec
from evoprune.shared.store_local import LocalStore
from tests import s3_server

pytestmark = pytest.mark.s3
s3_environment = s3_server.s3_environment
bucket = s3_server.bucket
ENDED = "00000000000000aa"
QUEUED = "00000000000000bb"
KEPT = "00000000000000cc"


def stored(store, spec, experiment_id, status):
    """A record in the store and its copy, with one result file, under the spec's results root."""
    record = ExperimentRecord(
        id=experiment_id,
        name="fake",
        config={},
        results_dir=str(spec.results_root / experiment_id),
        status=status,
    )
    store.create(record)
    layout = ResultsLayout(spec.results_root / experiment_id)
    (layout.root / "summary.json").write_text("{}")
    write_record_copy(layout, record, FrontState())
    return layout


def names(root):
    return sorted(path.name for path in root.iterdir())


def test_an_active_experiment_is_kept_whole(tmp_path, bucket):
    spec = StoreSpec(data_dir=str(tmp_path), results_location=f"s3://{bucket}/results")
    store = LocalStore(tmp_path)
    layout = stored(store, spec, QUEUED, "queued")
    copy = layout.record_copy.read_bytes()
    with pytest.raises(ExperimentActiveError):
        remove_experiment(store, spec, QUEUED)
    # the copy is back, byte for byte, and no marker says a removal is under way
    assert layout.record_copy.read_bytes() == copy and names(spec.results_root) == [QUEUED]
    assert store.get(QUEUED) is not None


def test_a_removal_cut_short_is_swept_by_the_next(tmp_path, bucket):
    spec = StoreSpec(data_dir=str(tmp_path), results_location=f"s3://{bucket}/results")
    store = LocalStore(tmp_path)
    ended = stored(store, spec, ENDED, "failed")
    stored(store, spec, QUEUED, "succeeded")
    # a removal of ENDED that stopped after the store forgot it: its marker and its objects are left
    (spec.results_root / f"{DELETED_PREFIX}{ENDED}").write_bytes(b"")
    ended.record_copy.unlink()
    store.delete(ENDED)
    # the marker and the copy-less folder are neither listed nor restored
    assert lost_record_ids(set(), spec) == [QUEUED]
    assert restore_lost_records(LocalStore(tmp_path / "empty"), spec) == [QUEUED]
    # a marker beside a record copy is a removal that was refused: what the store lost is restored, not swept
    kept = stored(LocalStore(tmp_path / "lost"), spec, KEPT, "succeeded")
    (spec.results_root / f"{DELETED_PREFIX}{KEPT}").write_bytes(b"")
    assert remove_experiment(store, spec, QUEUED)
    assert names(spec.results_root) == [f"{DELETED_PREFIX}{KEPT}", KEPT] and store.get(QUEUED) is None
    assert restore_lost_records(store, spec) == [KEPT] and kept.record_copy.is_file()
    assert remove_experiment(store, spec, KEPT)
    assert names(spec.results_root) == [] and store.get(KEPT) is None
    assert not remove_experiment(store, spec, QUEUED)
    # nothing is left in the bucket but the (empty) results root: not the swept objects, nor a marker
    whole = storage_path(f"s3://{bucket}")
    left = whole.filesystem.get_file_info(pafs.FileSelector(whole.key, recursive=True))
    assert [(info.path, info.type) for info in left] == [(f"{bucket}/results", pafs.FileType.Directory)]
