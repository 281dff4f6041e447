"""summary.json, the record copy, the ledger and plots, cut or with a byte changed: found, never read."""

from __future__ import annotations

import json
import re
import struct
import zlib

import pytest

from evoprune.coordinator.results.artifacts import check_artifact, check_png
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.results.summary import Summary
from evoprune.coordinator.service.records import restore_lost_records, write_record_copy
from evoprune.shared.fitness_cache import LocalFitnessCache
from evoprune.shared.objectives import Evaluation
from evoprune.shared.parquet_files import CorruptFileError
from evoprune.shared.sealed_json import SEAL_KEY, read_sealed_json
from evoprune.shared.store import ExperimentRecord, FrontState, StoreSpec
from evoprune.shared.store_local import LocalStore
from tests.coordinator.results.test_torn_files import FINISHED, FIXTURES, flipped, positions

SERVICE = FIXTURES / "service" / "00000000000000aa"
LEDGER_FLIPS = 300
# spread over the file, its last 200 bytes (the seal) always
FLIPS = 300


def test_a_changed_or_cut_summary_is_refused_naming_it(tmp_path):
    path = tmp_path / "summary.json"
    expected = Summary.read(FINISHED / "summary.json")  # written before seals: read as it is
    expected.write(path)
    data = path.read_bytes()
    assert f'"{SEAL_KEY}"'.encode() in data and data.startswith(b'{\n  "experiment"')  # still indented
    assert Summary.read(path) == expected
    for position in positions(len(data), FLIPS):
        path.write_bytes(flipped(data, position, bit=position % 7))
        try:
            summary = Summary.read(path)
        except CorruptFileError as error:
            assert "summary.json is damaged" in str(error) and "run the experiment again" in str(error)
            continue
        except ValueError:
            continue  # no longer a summary's shape (a key name changed): refused too
        assert summary == expected, f"a flip at byte {position} was read as another summary"
    for cut in (1, 5, len(data) // 2):
        path.write_bytes(data[:-cut])
        with pytest.raises(CorruptFileError, match=re.escape("summary.json is damaged")):
            Summary.read(path)


def test_a_damaged_record_copy_restores_nothing_and_an_intact_one_restores_its_record(tmp_path, caplog):
    state = json.loads((SERVICE / "service-state.json").read_text())
    record = ExperimentRecord.from_dict(state["record"])
    spec = StoreSpec(data_dir=str(tmp_path / "data"))
    layout = ResultsLayout(spec.results_root / record.id)
    write_record_copy(layout, record, FrontState.from_dict(state["front"]))
    data = layout.record_copy.read_bytes()
    for position in positions(len(data), FLIPS):
        layout.record_copy.write_bytes(flipped(data, position, bit=position % 7))
        try:
            content = read_sealed_json(layout.record_copy)
        except CorruptFileError as error:
            assert "service-state.json is damaged" in str(error)
            continue
        assert content == {"record": record.to_dict(), "front": state["front"]}, position
    layout.record_copy.write_bytes(flipped(data, data.index(b'"evaluations_done":') + 19))
    store = LocalStore(tmp_path / "data")
    assert restore_lost_records(store, spec) == [] and store.get(record.id) is None
    assert "service-state.json is damaged" in caplog.text
    layout.record_copy.write_bytes(data)
    assert restore_lost_records(store, spec) == [record.id] and store.get(record.id) == record


def test_a_record_copy_written_before_seals_still_restores(tmp_path):
    spec = StoreSpec(data_dir=str(tmp_path / "data"))
    (spec.results_root / SERVICE.name).mkdir(parents=True)
    (spec.results_root / SERVICE.name / "service-state.json").write_bytes(
        (SERVICE / "service-state.json").read_bytes()
    )
    store = LocalStore(tmp_path / "data")
    assert restore_lost_records(store, spec) == [SERVICE.name]


def ledger_entries(path) -> dict[str, Evaluation]:
    cache = LocalFitnessCache(path)
    return cache.get_many(cache._entries)


def test_a_changed_ledger_line_is_skipped_with_a_warning_never_read_as_another_evaluation(tmp_path, caplog):
    old = FINISHED / "state" / "trained.jsonl"
    expected = ledger_entries(old)  # lines written before digests: every one read
    assert len(expected) == len(old.read_text().splitlines())
    path = tmp_path / "trained.jsonl"
    LocalFitnessCache(path).put_many(expected)
    assert all('"sha256": ' in line for line in path.read_text().splitlines())
    assert ledger_entries(path) == expected
    data = path.read_bytes()
    skipped = 0
    for position in positions(len(data), LEDGER_FLIPS):
        path.write_bytes(flipped(data, position, bit=position % 8))
        caplog.clear()
        loaded = ledger_entries(path)
        # a damaged line is dropped (its mask trained again), never read with other values
        assert all(expected.get(key) == value for key, value in loaded.items()), position
        if len(loaded) < len(expected):
            skipped += 1
            if position == len(data) - 1:
                continue  # the last newline changed: a torn last line, as an interrupted append leaves
            # a changed newline joins two lines into one damaged one: one or two lines are skipped
            assert "trained.jsonl: " in caplog.text and "damaged line(s) skipped" in caplog.text, position
    assert skipped >= 0.95 * len(positions(len(data), LEDGER_FLIPS))
    # a cut: the torn last line is what an interrupted append leaves, dropped without alarm
    path.write_bytes(data[:-5])
    caplog.clear()
    assert len(ledger_entries(path)) == len(expected) - 1 and "damaged" not in caplog.text


def png(width: int = 3, height: int = 2) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + bytes(range(3 * width)) for _ in range(height)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_a_changed_or_cut_plot_is_refused_naming_it():
    data = png()
    check_png(data, "front.png")
    check_artifact(data, "front.png", "image")
    for position in range(len(data)):
        with pytest.raises(CorruptFileError, match=re.escape("front.png is damaged")):
            check_png(flipped(data, position, bit=position % 8), "front.png")
    for cut in range(1, len(data)):
        with pytest.raises(CorruptFileError, match=re.escape("front.png is damaged")):
            check_png(data[:-cut], "front.png")
