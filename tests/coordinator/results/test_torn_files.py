"""Every file of a results directory, cut short or with a byte changed: an error naming it, or a recovery."""

from __future__ import annotations

import random
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from evoprune.api.cli.main import main
from evoprune.coordinator.analysis.inputs import AnalysisError, read_results
from evoprune.coordinator.results.checkpoint import Checkpoint, CheckpointError, Journal, previous_path
from evoprune.coordinator.results.directory import ExperimentError, load_resumable
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.results.writer import read_evaluations
from evoprune.shared.parquet_files import CorruptFileError, read_verified_parquet, write_parquet
from tests.coordinator.analysis.fixtures import session_results

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "results-v1"
FINISHED = FIXTURES / "finished"
CANCELLED = FIXTURES / "cancelled"
# single-byte changes per file: spread over the whole file, the footer included
FLIPS_PER_FILE = 120


@pytest.fixture(autouse=True)
def own_feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny experiment written by this version (digests everywhere)."""
    results_dir, _, _ = session_results(tmp_path_factory.getbasetemp())
    return results_dir


def copy_of(directory: Path, tmp_path: Path) -> Path:
    copy = tmp_path / directory.name
    shutil.copytree(directory, copy)
    return copy


def flipped(data: bytes, position: int, bit: int = 0) -> bytes:
    changed = bytearray(data)
    changed[position] ^= 1 << bit
    return bytes(changed)


def positions(size: int, count: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    # the last 200 bytes (footer, digest, magic) always, the rest at random
    return sorted(set(range(max(0, size - 200), size)) | {rng.randrange(size) for _ in range(count)})


@pytest.mark.parametrize("name", ["evaluations.parquet", "front.parquet"])
def test_a_changed_or_cut_results_table_is_refused_naming_it(finished, tmp_path, name):
    original = finished / name
    data = original.read_bytes()
    expected = pq.read_table(original).to_pylist()
    path = tmp_path / name
    detected = unchanged = 0
    for position in positions(len(data), FLIPS_PER_FILE):
        path.write_bytes(flipped(data, position, bit=position % 8))
        try:
            rows = read_verified_parquet(path).to_pylist()
        except CorruptFileError as error:
            assert name in str(error)
            detected += 1
            continue
        # the only flips that pass change nothing that is read (the digest's own marker, say)
        assert rows == expected, f"a flip at byte {position} of {name} was read as other rows"
        unchanged += 1
    assert detected >= 0.95 * (detected + unchanged)
    for cut in (1, 5, 100, len(data) // 2):
        path.write_bytes(data[:-cut])
        with pytest.raises(CorruptFileError, match=name):
            read_verified_parquet(path)


def test_results_readers_name_the_damaged_file_and_what_to_do(finished, tmp_path):
    out = copy_of(finished, tmp_path)
    layout = ResultsLayout(out)
    layout.evaluations.write_bytes(layout.evaluations.read_bytes()[:-5])
    with pytest.raises(CorruptFileError, match=re.escape("evaluations.parquet")):
        read_evaluations(out)
    with pytest.raises(AnalysisError, match=re.escape("evaluations.parquet is corrupt")):
        read_results(out)
    data = layout.front.read_bytes()
    layout.front.write_bytes(flipped(data, len(data) // 3))
    layout.evaluations.write_bytes((finished / "evaluations.parquet").read_bytes())
    with pytest.raises(AnalysisError, match=re.escape("front.parquet is corrupt")):
        read_results(out)


def test_tables_written_before_digests_still_open():
    for name in ("evaluations.parquet", "front.parquet", "analysis/importance.parquet"):
        path = FINISHED / name
        assert read_verified_parquet(path).equals(pq.read_table(path))


def test_an_analysis_table_is_written_with_its_digest(tmp_path):
    table = pq.read_table(FINISHED / "analysis" / "importance.parquet")
    path = tmp_path / "importance.parquet"
    write_parquet(path, table)
    assert read_verified_parquet(path).equals(table)
    metadata = pq.ParquetFile(path).metadata
    assert b"evoprune.file_sha256" in metadata.metadata
    path.write_bytes(flipped(path.read_bytes(), 40))
    with pytest.raises(CorruptFileError, match=re.escape("importance.parquet")):
        read_verified_parquet(path)


def test_a_changed_checkpoint_byte_is_refused_or_changes_nothing(finished, tmp_path):
    source = ResultsLayout(finished).checkpoint
    data = source.read_bytes()
    expected = Checkpoint.read(source)
    assert expected.journal_sha256 is not None
    path = tmp_path / "checkpoint.json"
    for position in range(len(data)):
        path.write_bytes(flipped(data, position, bit=position % 7))
        try:
            checkpoint = Checkpoint.read(path)
        except CheckpointError as error:
            assert "checkpoint.json" in str(error)
            continue
        assert checkpoint == expected, f"a flip at byte {position} was read as another checkpoint"
    for cut in (1, 5, len(data) // 2):
        path.write_bytes(data[:-cut])
        with pytest.raises(CheckpointError, match=re.escape("checkpoint.json")):
            Checkpoint.read(path)


def test_a_damaged_checkpoint_falls_back_to_the_previous_one_and_the_journal(tmp_path):
    out = copy_of(CANCELLED, tmp_path)
    layout = ResultsLayout(out)
    checkpoint = Checkpoint.read(layout.checkpoint)
    checkpoint.write(layout.checkpoint)
    checkpoint.write(layout.checkpoint)  # the first write is now the previous one
    assert previous_path(layout.checkpoint).exists()
    layout.checkpoint.write_bytes(layout.checkpoint.read_bytes()[:-5])
    _, restored = load_resumable(out)
    assert restored == checkpoint
    assert main(["resume", str(out), "--workers", "0"]) == 0
    resumed = pq.read_table(layout.evaluations).to_pylist()
    straight = pq.read_table(FINISHED / "evaluations.parquet").to_pylist()
    names = ("run", "step", "mask", "accuracy", "active_fraction", "auroc")
    assert [[row[n] for n in names] for row in resumed] == [[row[n] for n in names] for row in straight]


def test_when_both_checkpoints_are_damaged_the_message_names_them_and_what_to_do(tmp_path):
    out = copy_of(CANCELLED, tmp_path)
    layout = ResultsLayout(out)
    checkpoint = Checkpoint.read(layout.checkpoint)
    checkpoint.write(layout.checkpoint)
    checkpoint.write(layout.checkpoint)
    for path in (layout.checkpoint, previous_path(layout.checkpoint)):
        data = path.read_bytes()
        path.write_bytes(flipped(data, data.index(b'"rows":') + 7))
    with pytest.raises(ExperimentError) as caught:
        load_resumable(out)
    message = str(caught.value)
    assert "checkpoint.json" in message and "checkpoint.previous.json" in message
    assert "run the experiment again" in message


def test_a_changed_or_cut_journal_is_refused_naming_it(finished, tmp_path):
    layout = ResultsLayout(finished)
    checkpoint = Checkpoint.read(layout.checkpoint)
    data = layout.journal.read_bytes()
    expected = Journal(layout.journal).read(checkpoint.rows, checkpoint.journal_sha256)
    path = tmp_path / "journal.jsonl"
    for position in positions(len(data), FLIPS_PER_FILE):
        path.write_bytes(flipped(data, position, bit=position % 8))
        try:
            records = Journal(path).read(checkpoint.rows, checkpoint.journal_sha256)
        except CheckpointError as error:
            assert "journal.jsonl is damaged" in str(error) and "run the experiment again" in str(error)
            continue
        assert records == expected, f"a flip at byte {position} was read as other rows"
    for cut in (2, 5, len(data) // 2):
        path.write_bytes(data[:-cut])
        with pytest.raises(CheckpointError, match=re.escape("journal.jsonl is damaged")):
            Journal(path).read(checkpoint.rows, checkpoint.journal_sha256)
    # the last newline alone: every line is whole, nothing differs
    path.write_bytes(data[:-1])
    assert Journal(path).read(checkpoint.rows, checkpoint.journal_sha256) == expected


def test_resume_of_a_changed_journal_says_which_file_and_what_to_do(tmp_path, capsys):
    out = copy_of(CANCELLED, tmp_path)
    layout = ResultsLayout(out)
    checkpoint = Checkpoint.read(layout.checkpoint)
    # seal the old checkpoint with the journal's digest, as this version writes it
    journal = Journal(layout.journal)
    journal.load(checkpoint.rows)
    replace(checkpoint, journal_sha256=journal.sha256).write(layout.checkpoint)
    text = layout.journal.read_text()
    layout.journal.write_text(text.replace('"accuracy":0.', '"accuracy":1.', 1))
    assert main(["resume", str(out), "--workers", "0"]) != 0
    error = " ".join(capsys.readouterr().err.split())  # the command line wraps its messages
    assert "journal.jsonl is damaged" in error and "run the experiment again" in error


def test_a_changed_config_yaml_is_named_as_changed(tmp_path):
    out = copy_of(CANCELLED, tmp_path)
    layout = ResultsLayout(out)
    layout.config.write_text(layout.config.read_text().replace("  seed: 0", "  seed: 1", 1))
    with pytest.raises(ExperimentError) as caught:
        load_resumable(out)
    message = str(caught.value)
    assert "config.yaml is not the config the experiment was started with" in message
    assert "Restore the original config.yaml" in message
    layout.config.write_text(layout.config.read_text()[:40])
    with pytest.raises(ExperimentError, match=re.escape("config.yaml")):
        load_resumable(out)
