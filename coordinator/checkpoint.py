"""Crash-safe files of an experiment: reading its JSON checkpoint and its append-only journal."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from evoprune.shared.atomic_files import write_atomic


class CheckpointError(ValueError):
    """A checkpoint or journal that is missing, unreadable, or inconsistent."""


def read_json(path: Path) -> Any:
    """Read a JSON file (written by `shared.atomic_files.write_json_atomic`).

    Args:
        path: the file.

    Returns:
        The parsed data.

    Raises:
        CheckpointError: missing or not JSON.

    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is unreadable: {error}") from None


class Journal:
    """JSON lines appended and fsynced as they are produced; a checkpoint records how many are valid.

    Lines past the checkpoint's count (written after the last checkpoint, before a crash) are dropped on
    resume and produced again identically.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0

    def append(self, records: list[dict[str, Any]]) -> None:
        """Append records durably.

        Args:
            records: JSON-ready mappings.

        """
        if not records:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records))
            handle.flush()
            os.fsync(handle.fileno())
        self.count += len(records)

    def load(self, committed: int) -> list[dict[str, Any]]:
        """Read the first `committed` records and cut the file back to them.

        Args:
            committed: how many records the checkpoint vouches for.

        Returns:
            Those records.

        Raises:
            CheckpointError: fewer valid records than `committed`.

        """
        records: list[dict[str, Any]] = []
        if committed > 0:
            try:
                lines = self.path.read_text(encoding="utf-8").splitlines()
            except OSError as error:
                raise CheckpointError(f"{self.path} is unreadable: {error}") from None
            for line in lines[:committed]:
                try:
                    records.append(json.loads(line))
                except ValueError:
                    break
            if len(records) < committed:
                raise CheckpointError(
                    f"{self.path} holds {len(records)} valid records but the checkpoint expects {committed}"
                )
        write_atomic(self.path, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
        self.count = len(records)
        return records
