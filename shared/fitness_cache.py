"""The fitness cache: mask evaluations keyed by (feature set, protocol, mask); a local file-backed store."""

from __future__ import annotations

import abc
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from evoprune.shared.objectives import Evaluation
from evoprune.shared.storage import ObjectPath, StoragePath, storage_path

# Each line carries the first LINE_DIGEST_HEX hex digits of the sha256 of its entry, so a changed byte is
# found rather than read as another evaluation; lines written before (without it) are read as they were.
LINE_DIGEST_KEY = "sha256"
LINE_DIGEST_HEX = 16
log = logging.getLogger(__name__)


class FitnessCache(abc.ABC):
    """Where finished evaluations are kept so that no mask is trained twice.

    Keys come from `shared.masks.fitness_key`; fitness is deterministic in them, so a hit is exact.
    """

    @abc.abstractmethod
    def get_many(self, keys: Iterable[str]) -> dict[str, Evaluation]:
        """Look keys up.

        Args:
            keys: fitness keys.

        Returns:
            The evaluations of the keys that are present; absent keys are simply missing.

        """

    @abc.abstractmethod
    def put_many(self, entries: Mapping[str, Evaluation]) -> None:
        """Store evaluations durably before returning.

        Args:
            entries: fitness key → evaluation.

        """

    def describe(self) -> str:
        """Describe the cache's location in a few words, for logs."""
        return type(self).__name__

    def close(self) -> None:
        """Releases files or connections."""
        return  # nothing to release by default


class LocalFitnessCache(FitnessCache):
    """An in-memory dict, optionally persisted as an append-only JSON-lines file.

    Appending one line per entry (and fsyncing) means a crash can at worst leave a torn last line, which
    loading skips; everything written before survives. A line whose digest differs from its entry (a byte
    changed on disk) is skipped too, with a warning naming the file: its mask is trained again, which gives
    the same evaluation, never a wrong one. Object storage cannot append: there the file's
    text is kept in memory and each `put_many` uploads it whole (one atomic PUT).
    """

    def __init__(self, path: str | Path | ObjectPath | None = None) -> None:
        self._entries: dict[str, Evaluation] = {}
        self._path = storage_path(path) if path is not None else None
        self._torn_tail = False
        self._uploaded = ""  # the object's text as uploaded last, when the file lives on object storage
        if self._path is not None and self._path.exists():
            self._load(self._path)

    def _load(self, path: StoragePath) -> None:
        text = path.read_text(encoding="utf-8", errors="replace")
        if isinstance(path, ObjectPath):
            self._uploaded = text
        # the next append must not glue its first record onto a torn last line
        self._torn_tail = bool(text) and not text.endswith("\n")
        lines = text.splitlines()
        damaged = 0
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                key, evaluation = record["key"], record["evaluation"]
                if LINE_DIGEST_KEY in record and record[LINE_DIGEST_KEY] != _line_digest(key, evaluation):
                    raise ValueError("the line's digest differs from its entry")
                self._entries[key] = Evaluation.from_dict(evaluation)
            except (ValueError, KeyError, TypeError):
                # a torn last line is what an interrupted write leaves; any other is damage worth a word
                damaged += number < len(lines) or text.endswith("\n")
        if damaged:
            log.warning(
                "%s: %d damaged line(s) skipped; their masks are trained again (the same evaluations)",
                path,
                damaged,
            )

    def __len__(self) -> int:
        return len(self._entries)

    def get_many(self, keys: Iterable[str]) -> dict[str, Evaluation]:
        return {key: self._entries[key] for key in keys if key in self._entries}

    def put_many(self, entries: Mapping[str, Evaluation]) -> None:
        new = {key: value for key, value in entries.items() if key not in self._entries}
        self._entries.update(new)
        if self._path is None or not new:
            return
        lines = "".join(_line(key, value) for key, value in new.items())
        if self._torn_tail:
            lines = "\n" + lines
            self._torn_tail = False
        if isinstance(self._path, ObjectPath):
            self._path.write_text(self._uploaded + lines)
            self._uploaded += lines
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write(lines)
            handle.flush()
            os.fsync(handle.fileno())

    def describe(self) -> str:
        return f"local file {self._path}" if self._path else "in memory"


def _line_digest(key: Any, evaluation: Any) -> str:
    text = json.dumps({"key": key, "evaluation": evaluation}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:LINE_DIGEST_HEX]


def _line(key: str, value: Evaluation) -> str:
    evaluation = value.to_dict()
    entry = {"key": key, "evaluation": evaluation, LINE_DIGEST_KEY: _line_digest(key, evaluation)}
    return json.dumps(entry) + "\n"
