"""Object storage through pyarrow's filesystems, against a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest

from evoprune.coordinator.results.checkpoint import Checkpoint, CheckpointError, Journal, previous_path
from evoprune.shared.atomic_files import atomic_file, write_atomic
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.fitness_cache import LocalFitnessCache
from evoprune.shared.objectives import Evaluation
from evoprune.shared.parquet_files import CorruptFileError, read_verified_parquet, write_parquet
from evoprune.shared.storage import ObjectPath, is_object_uri, storage_path, upload_folder
from tests import s3_server

pytestmark = pytest.mark.s3
# the server and a fresh bucket per test, as fixtures of this module
s3_environment = s3_server.s3_environment
bucket = s3_server.bucket
# rounds of replacing the checkpoint while another thread reads it; after each write the writer waits for
# two more reads (one of them wholly after the write), so both versions are seen and reads overlap writes
ROUNDS = 12
READS_WAIT_S = 30.0


def test_local_paths_stay_paths(tmp_path):
    assert storage_path(str(tmp_path)) == tmp_path
    assert storage_path(tmp_path / "x") == tmp_path / "x"
    assert not is_object_uri("/data/s3://x") and is_object_uri("S3://bucket/x") and is_object_uri("gs://b/x")


def test_object_paths_behave_as_paths(bucket):
    root = storage_path(f"s3://{bucket}/runs/one")
    assert isinstance(root, ObjectPath) and str(root) == f"s3://{bucket}/runs/one"
    assert not root.exists()
    file = root / "state" / "checkpoint.json"
    assert (file.name, file.stem, file.suffix) == ("checkpoint.json", "checkpoint", ".json")
    assert previous_path(file) == root / "state" / "checkpoint.previous.json"
    write_atomic(file, "{}")
    assert root.is_dir() and file.is_file() and file.read_text() == "{}"
    assert sorted(path.name for path in root.iterdir()) == ["state"]
    file.unlink()
    file.unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError):
        file.read_bytes()
    with pytest.raises(ValueError, match="names no bucket"):
        storage_path("s3://")


def test_a_failed_write_leaves_the_old_object(bucket):
    path = storage_path(f"s3://{bucket}/summary.json")
    write_atomic(path, "old")
    with pytest.raises(RuntimeError), atomic_file(path) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"


def test_parquet_digests_hold_on_object_storage(bucket):
    path = storage_path(f"s3://{bucket}/evaluations.parquet")
    table = pa.table({"run": [0, 1], "accuracy": [0.5, 0.75]})
    write_parquet(path, table)
    assert read_verified_parquet(path).equals(table)
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match=r"evaluations\.parquet"):
        read_verified_parquet(path)


def checkpoint_of(size: int, rows: int) -> Checkpoint:
    # a search state of `size` genomes: large ones go up in several parts of a multipart upload
    genome = "0123456789abcdef" * 8
    return Checkpoint(
        fingerprint="f" * 32,
        status=ExperimentStatus.RUNNING,
        feature_key="features",
        mask_length=512,
        rows=rows,
        elapsed_s=1.5,
        runs=({"population": [genome] * size},),
    )


def test_a_reader_never_sees_a_torn_checkpoint(bucket):
    """Checkpoints of 1 kB and of ~3 MB replace each other while another thread reads them."""
    path = storage_path(f"s3://{bucket}/run/state/checkpoint.json")
    small, large = checkpoint_of(8, 1), checkpoint_of(20_000, 2)
    small.write(path)
    done = threading.Event()
    seen: list[int] = []
    failures: list[BaseException] = []

    def read_while_written() -> None:
        while not done.is_set():
            try:
                seen.append(Checkpoint.read(path).rows)
            except BaseException as error:  # every failure is the test's finding, not the thread's end
                failures.append(error)

    reader = threading.Thread(target=read_while_written)
    reader.start()
    try:
        for _ in range(ROUNDS):
            for checkpoint in (large, small):
                checkpoint.write(path)
                reads_before = len(seen) + len(failures)
                deadline = time.monotonic() + READS_WAIT_S
                while len(seen) + len(failures) < reads_before + 2 and time.monotonic() < deadline:
                    time.sleep(0.001)
    finally:
        done.set()
        reader.join()
    assert not failures, failures[:3]
    assert set(seen) == {1, 2}
    # the one replaced last was kept, by a server-side copy, for a resume to fall back to
    assert Checkpoint.read(previous_path(path)) == large
    path.write_text('{"format": "evoprune-exp')
    assert Checkpoint.read_or_previous(path) == large
    with pytest.raises(CheckpointError):
        Checkpoint.read(path)


def test_journal_and_ledger_grow_on_object_storage(bucket):
    root = storage_path(f"s3://{bucket}/run")
    journal = Journal(root / "state" / "journal.jsonl")
    journal.append([{"row": 1}, {"row": 2}])
    journal.append([{"row": 3}])
    again = Journal(root / "state" / "journal.jsonl")
    assert again.load(2, None) == [{"row": 1}, {"row": 2}]
    again.append([{"row": 4}])
    assert again.read(3) == [{"row": 1}, {"row": 2}, {"row": 4}]
    ledger = LocalFitnessCache(root / "state" / "trained.jsonl")
    ledger.put_many({"a": Evaluation(0.5, 0.25, 0.75)})
    ledger.put_many({"b": Evaluation(0.6, 0.5, 0.7)})
    assert set(LocalFitnessCache(root / "state" / "trained.jsonl").get_many(["a", "b"])) == {"a", "b"}


def test_local_atomic_writes_are_unchanged(tmp_path: Path):
    write_atomic(tmp_path / "a" / "b.json", "x")
    assert (tmp_path / "a" / "b.json").read_text() == "x"


def test_a_folder_is_uploaded_with_its_index_last_and_old_objects_removed(bucket, tmp_path: Path):
    local = tmp_path / "analysis"
    (local / "figures").mkdir(parents=True)
    (local / "figures" / "a.png").write_bytes(b"a")
    (local / "b.parquet").write_bytes(b"b")
    (local / "index.json").write_text("{}")
    target = storage_path(f"s3://{bucket}/run/analysis")
    (target / "left-over.png").write_bytes(b"old")
    assert upload_folder(local, target, last="index.json") == ["b.parquet", "figures/a.png", "index.json"]
    assert not (target / "left-over.png").exists()
    assert (target / "figures" / "a.png").read_bytes() == b"a" and (target / "index.json").read_text() == "{}"
    (local / "index.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"index\.json"):
        upload_folder(local, target, last="index.json")
    assert (target / "index.json").exists()  # nothing was touched
