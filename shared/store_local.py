"""The local store: one folder of files per experiment, safe to share between the API and runner processes."""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import os
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evoprune.shared.atomic_files import write_atomic
from evoprune.shared.fitness_cache import FitnessCache, LocalFitnessCache
from evoprune.shared.store import (
    ExperimentActiveError,
    ExperimentRecord,
    ExperimentRecordDocument,
    FrontState,
    Snapshot,
    Store,
    StoredEvent,
    StoreError,
    StoreUnavailableError,
    TooManyActiveError,
    valid_experiment_id,
)

STORE_DIR = "store"
# one empty file per queued or running experiment: the cap on active experiments is counted from here
ACTIVE_DIR = "active"
FITNESS_FILE = "fitness.jsonl"
# an experiment's folder is renamed to this prefix (not a valid id, so never listed) and then removed: a
# reader sees the whole folder or none of it, and a removal cut short leaves only a folder to sweep
DELETED_PREFIX = ".deleted-"
# the tail read to find the last event's number; an event line is far shorter than this
TAIL_BYTES = 1 << 20


@dataclass
class _EventIndex:
    """Where each event line starts in an events file, read incrementally as the file grows."""

    size: int = 0
    seqs: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


def _write_atomic(path: Path, text: str) -> None:
    # rewritten every publish interval and rebuilt from the results directory if lost: not worth an fsync
    write_atomic(path, text, durable=False)


class LocalStore(Store):
    """Files under `data_dir/store/<id>/`, shared safely by the API and runner processes.

    record.json and front.json are replaced atomically; events.jsonl is append-only, one `SEQ<TAB>JSON`
    line per event; `cancel` is a flag file. `data_dir/store/active/<id>` marks the queued or running ones.

    Writers of one experiment take an exclusive lock on its folder, so the API and the runner never
    interleave. Readers need no lock: they only see complete lines and whole files.
    """

    kind = "local"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self._root = self.data_dir / STORE_DIR
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailableError(
                f"the data directory {self.data_dir} cannot be created: {error}"
            ) from None
        self._indexes: dict[str, _EventIndex] = {}
        # parsed record.json files by path, with the (inode, mtime, size) they were read at
        self._records: dict[Path, tuple[tuple[int, int, int], ExperimentRecordDocument]] = {}
        self._lock = threading.Lock()

    def _folder(self, experiment_id: str) -> Path | None:
        return self._root / experiment_id if valid_experiment_id(experiment_id) else None

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        with (folder / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # ---- records ---------------------------------------------------------------------------------------

    def create(self, record: ExperimentRecord, max_active: int | None = None) -> None:
        folder = self._folder(record.id)
        if folder is None:
            raise StoreError(f"{record.id!r} is not an experiment id")
        # one creation at a time across processes: the count and the new record are one step
        with self._locked(self._root):
            if max_active is not None:
                active = len(self.active_ids())
                if active >= max_active:
                    raise TooManyActiveError(active, max_active)
            try:
                folder.mkdir()
            except FileExistsError:
                raise StoreError(f"an experiment {record.id} already exists") from None
            with self._locked(folder):
                _write_atomic(folder / "record.json", json.dumps(record.to_dict()))
            self._mark_active(record)

    def _mark_active(self, record: ExperimentRecord) -> None:
        marker = self._root / ACTIVE_DIR / record.id
        if record.terminal:
            marker.unlink(missing_ok=True)
        elif (self._root / ACTIVE_DIR).is_dir():
            marker.touch()

    def delete(self, experiment_id: str) -> bool:
        folder = self._folder(experiment_id)
        if folder is None:
            return False
        trash = self._root / f"{DELETED_PREFIX}{experiment_id}-{os.getpid()}-{threading.get_ident()}"
        try:
            # under the store-wide lock, as creation: the status check and the removal are one step
            with self._locked(self._root):
                if not folder.is_dir():
                    return False
                with self._locked(folder):
                    record = self._read_record(folder)
                    if record is not None and not record.terminal:
                        raise ExperimentActiveError(experiment_id, record.status.value)
                    folder.rename(trash)
                (self._root / ACTIVE_DIR / experiment_id).unlink(missing_ok=True)
            with self._lock:
                self._indexes.pop(experiment_id, None)
                self._records.pop(folder / "record.json", None)
            self._sweep()
        except OSError as error:
            raise StoreUnavailableError(f"the local store {self._root} cannot be written: {error}") from None
        return record is not None

    def _sweep(self) -> None:
        # this removal's folder, and any left by a removal that a crash cut short
        for leftover in self._root.glob(f"{DELETED_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)

    def active_ids(self) -> list[str]:
        active_dir = self._root / ACTIVE_DIR
        if not active_dir.is_dir():
            # a store from before the index: built once from every record, then kept up to date
            building = self._root / f".{ACTIVE_DIR}-{os.getpid()}-{threading.get_ident()}"
            building.mkdir(exist_ok=True)
            for existing in self.records():
                if not existing.terminal:
                    (building / existing.id).touch()
            try:
                building.rename(active_dir)
            except OSError:  # another process built it first
                for marker in building.iterdir():
                    marker.unlink()
                building.rmdir()
        ids = []
        for marker in active_dir.iterdir():
            folder = self._folder(marker.name)
            record = self._read_record(folder) if folder is not None else None
            # a marker outlives its record's end only if a process died between the two writes
            if record is None or record.terminal:
                marker.unlink(missing_ok=True)
            else:
                ids.append(marker.name)
        return sorted(ids)

    def _read_record(self, folder: Path) -> ExperimentRecord | None:
        path = folder / "record.json"
        try:
            stat = path.stat()
            # record.json is only ever replaced (a new inode), so an unchanged stat means unchanged content
            version = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
            cached = self._records.get(path)
            if cached is not None and cached[0] == version:
                return ExperimentRecord.from_dict(cached[1])
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as error:
            raise StoreUnavailableError(f"{path} cannot be read: {error}") from None
        try:
            data = json.loads(text)
            record = ExperimentRecord.from_dict(data)
        except ValueError as error:
            raise StoreError(f"{path} is corrupt: {error}") from None
        self._records[path] = (version, data)
        return record

    def get(self, experiment_id: str) -> ExperimentRecord | None:
        folder = self._folder(experiment_id)
        return None if folder is None else self._read_record(folder)

    def records(self) -> list[ExperimentRecord]:
        records = []
        for folder in self._root.iterdir():
            if folder.is_dir() and valid_experiment_id(folder.name):
                record = self._read_record(folder)
                if record is not None:
                    records.append(record)
        return sorted(records, key=lambda record: (record.created_at, record.id), reverse=True)

    def snapshot(self, experiment_id: str) -> Snapshot | None:
        folder = self._folder(experiment_id)
        if folder is None:
            return None
        # the record first: front.json is written before record.json, so it is at least as new, and a
        # newer front is harmless (front events replace whole fronts)
        record = self._read_record(folder)
        if record is None:
            return None
        try:
            front = FrontState.from_dict(json.loads((folder / "front.json").read_text(encoding="utf-8")))
        except FileNotFoundError:
            front = FrontState()
        except ValueError as error:
            raise StoreError(f"{folder / 'front.json'} is corrupt: {error}") from None
        return Snapshot(record=record, front=front)

    def publish(
        self,
        experiment_id: str,
        events: Sequence[StoredEvent],
        record: ExperimentRecord,
        front: FrontState | None = None,
        expect_existing: bool = True,
    ) -> bool:
        folder = self._folder(experiment_id)
        if folder is None:
            raise StoreError(f"{experiment_id!r} is not an experiment id")
        try:
            if expect_existing and not (folder / "record.json").exists():
                return False
            folder.mkdir(parents=True, exist_ok=True)
            with self._locked(folder):
                # the events before the first one sent are missing: lost, as in RedisStore's script
                stream = folder / "events.jsonl"
                last = self._last_seq(stream)
                if expect_existing and events and events[0][0] > last + 1:
                    return False
                self._append(stream, events, last)
                if front is not None:
                    _write_atomic(folder / "front.json", json.dumps(front.to_dict()))
                _write_atomic(folder / "record.json", json.dumps(record.to_dict()))
            if record.terminal or not expect_existing:
                self._mark_active(record)
        except OSError as error:
            raise StoreUnavailableError(f"the local store {self._root} cannot be written: {error}") from None
        return True

    # ---- events ----------------------------------------------------------------------------------------

    @staticmethod
    def _last_seq(path: Path) -> int:
        try:
            with path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                size = handle.tell()
                handle.seek(max(0, size - TAIL_BYTES))
                tail = handle.read()
        except FileNotFoundError:
            return 0
        for line in reversed(tail.split(b"\n")):
            head, tab, _ = line.partition(b"\t")
            if tab and head.isdigit():
                return int(head)
        return 0

    def _append(self, path: Path, events: Sequence[StoredEvent], last: int) -> None:
        lines = []
        for seq, data in events:
            if seq <= last:
                continue  # already stored by an earlier, partly failed publish
            lines.append(f"{seq}\t{json.dumps(data, separators=(',', ':'))}\n")
            last = seq
        if lines:
            with path.open("a", encoding="utf-8") as handle:
                handle.write("".join(lines))

    def _index(self, experiment_id: str, path: Path) -> _EventIndex:
        """Bring the index of `path` up to date with its complete lines (call with self._lock held)."""
        index = self._indexes.setdefault(experiment_id, _EventIndex())
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < index.size:
            index = self._indexes[experiment_id] = _EventIndex()  # replaced by another file: start over
        if size == index.size:
            return index
        with path.open("rb") as handle:
            handle.seek(index.size)
            chunk = handle.read(size - index.size)
        offset = index.size
        for line in chunk.split(b"\n")[:-1]:  # the piece after the last newline is still being written
            head, tab, _ = line.partition(b"\t")
            if tab and head.isdigit():
                index.seqs.append(int(head))
                index.offsets.append(offset)
            offset += len(line) + 1
        index.size = offset
        return index

    def read_events(self, experiment_id: str, after: int = 0, limit: int = 1000) -> list[StoredEvent]:
        folder = self._folder(experiment_id)
        if folder is None or limit <= 0:
            return []
        path = folder / "events.jsonl"
        with self._lock:
            index = self._index(experiment_id, path)
            first = bisect.bisect_right(index.seqs, after)
            if first >= len(index.seqs):
                return []
            last = min(len(index.seqs), first + limit)
            start = index.offsets[first]
            stop = index.offsets[last] if last < len(index.offsets) else index.size
        try:
            with path.open("rb") as handle:
                handle.seek(start)
                chunk = handle.read(stop - start)
        except OSError as error:
            raise StoreUnavailableError(f"{path} cannot be read: {error}") from None
        events: list[StoredEvent] = []
        for line in chunk.split(b"\n"):
            head, tab, body = line.partition(b"\t")
            if tab:
                events.append((int(head), json.loads(body)))
        return events

    def event_id(self, seq: int) -> str:
        return str(seq)

    def parse_event_id(self, text: str) -> int | None:
        text = text.strip()
        # isdigit() alone admits Unicode digits such as "²", which int() refuses
        if text.isascii() and text.isdigit() and len(text) < 19:
            return int(text)
        return None

    # ---- cancellation ----------------------------------------------------------------------------------

    def request_cancel(self, experiment_id: str) -> None:
        folder = self._folder(experiment_id)
        if folder is None or not folder.is_dir():
            raise StoreError(f"no experiment {experiment_id!r}")
        (folder / "cancel").touch()

    def cancel_requested(self, experiment_id: str) -> bool:
        folder = self._folder(experiment_id)
        return folder is not None and (folder / "cancel").exists()

    # ---- the rest --------------------------------------------------------------------------------------

    def fitness_cache(self) -> FitnessCache:
        return LocalFitnessCache(self.data_dir / FITNESS_FILE)

    def ping(self) -> None:
        if not os.access(self._root, os.W_OK):
            raise StoreUnavailableError(f"the local store {self._root} is not writable")

    def describe(self) -> str:
        return f"local files under {self._root}"
