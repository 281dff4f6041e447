"""Atomic file replacement: the new content or the old, never a mix, and readable like any file."""

import json
import stat

import pytest

from evoprune.shared import atomic_files
from evoprune.shared.atomic_files import atomic_file, write_atomic, write_json_atomic


def test_write_replaces_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "nested" / "state.json"
    write_json_atomic(path, {"a": 1})
    write_atomic(path, '{"a": 2}', durable=False)
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path):
    path = tmp_path / "table.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(path) as handle:
        handle.write(b"half")
        raise RuntimeError("the writer failed")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.bin"]


def test_permissions_are_those_of_a_normal_file_or_the_given_mode(tmp_path):
    write_atomic(tmp_path / "a.txt", "x")
    # not private like a bare mkstemp file: results and caches are read by other users and processes
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~atomic_files._UMASK
    with atomic_file(tmp_path / "b.bin", mode=0o640) as handle:
        handle.write(b"y")
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o640
