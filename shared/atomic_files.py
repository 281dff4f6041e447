"""Atomic file replacement: readers in any process see the old content or the new, never a mix."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from evoprune.shared.storage import ObjectPath, StoragePath, storage_path


def _read_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, not while other threads create files
    current = os.umask(0)
    os.umask(current)
    return current


_UMASK = _read_umask()


def _fsync_directory(directory: Path) -> None:
    # makes the rename itself durable; some filesystems refuse to open folders (the rename is atomic anyway)
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_file(
    path: StoragePath, *, durable: bool = True, mode: int | None = None
) -> Iterator[IO[bytes]]:
    """A binary handle whose content replaces `path` when the block ends without an exception.

    Locally the content goes to a temporary file, unique per call (several processes, the API and a
    runner, may write the same file), renamed over `path`. On object storage, which has no rename, it is
    kept in memory and uploaded whole in one request when the block ends: the store makes a completed
    upload visible atomically, and a process killed before the end has uploaded nothing. On an exception
    `path` keeps its old content either way.

    Args:
        path: the target file (local or an `ObjectPath`); a local folder is created when missing.
        durable: fsync the file and its folder, so the new content survives a power loss (a file rewritten
            every fraction of a second, whose content is also elsewhere, may skip that cost); an upload
            is durable once the store acknowledges it.
        mode: permission bits of the new file (default: those of a file created normally, umask applied;
            object storage has none).

    Yields:
        The open handle to write to.

    """
    path = storage_path(path)
    if isinstance(path, ObjectPath):
        buffer = io.BytesIO()
        yield buffer
        path.write_bytes(buffer.getvalue())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file private (0600); results and caches are meant to be read like any file
        os.fchmod(descriptor, mode if mode is not None else 0o666 & ~_UMASK)
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_directory(path.parent)


def write_atomic(path: StoragePath, text: str, *, durable: bool = True) -> None:
    """Replace `path` with `text` (UTF-8) atomically.

    Args:
        path: the target file.
        text: its new content.
        durable: see `atomic_file`.

    """
    with atomic_file(path, durable=durable) as handle:
        handle.write(text.encode("utf-8"))


def write_json_atomic(path: StoragePath, data: Any, *, durable: bool = True) -> None:
    """Replace `path` with compact JSON atomically.

    Args:
        path: the target file.
        data: JSON-ready data.
        durable: see `atomic_file`.

    """
    write_atomic(path, json.dumps(data, separators=(",", ":")), durable=durable)
