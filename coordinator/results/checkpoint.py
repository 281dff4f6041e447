"""Crash-safe files of an experiment: its typed checkpoint (state/checkpoint.json) and append-only journal."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict

from evoprune.shared.atomic_files import write_atomic, write_json_atomic
from evoprune.shared.evaluation_row import EvaluationRowRecord
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.storage import ObjectPath, StoragePath

if TYPE_CHECKING:
    from evoprune.coordinator.nsga2 import SearchState

CHECKPOINT_FORMAT = "evoprune-experiment"
CHECKPOINT_VERSION = 1
# written since digests: the checkpoint's own sha256 and that of the journal lines it vouches for; a
# checkpoint without them (written before) is read as before
SELF_DIGEST_KEY: Final = "sha256"
JOURNAL_DIGEST_KEY: Final = "journal_sha256"
KNOWN_KEYS = frozenset(
    {
        "format",
        "version",
        "fingerprint",
        "status",
        "feature_key",
        "mask_length",
        "rows",
        "elapsed_s",
        "runs",
        JOURNAL_DIGEST_KEY,
        SELF_DIGEST_KEY,
    }
)
RESTART_ADVICE = "restore it from a backup, or run the experiment again into a new directory (--out)"
log = logging.getLogger(__name__)


class CheckpointDocument(TypedDict):
    """state/checkpoint.json as `Checkpoint.to_dict` writes it, key for key."""

    format: str
    version: int
    fingerprint: str
    status: str
    feature_key: str
    mask_length: int
    rows: int
    elapsed_s: float
    runs: list[SearchState]
    journal_sha256: NotRequired[str]
    sha256: NotRequired[str]


class CheckpointError(ValueError):
    """A checkpoint or journal that is missing, unreadable, or inconsistent."""


@dataclass(frozen=True)
class Checkpoint:
    """The state of an experiment after its last completed step: enough to resume it exactly.

    Its JSON form (`to_dict`) is what state/checkpoint.json has always held, key for key.
    """

    fingerprint: str  # the experiment's identity (`directory.experiment_fingerprint` of its config)
    status: ExperimentStatus
    feature_key: str  # the feature set the masks were evaluated on
    mask_length: int
    rows: int  # how many journal lines the checkpoint vouches for
    elapsed_s: float  # wall time of the experiment before this checkpoint (over every resume)
    runs: tuple[SearchState, ...]  # each run's NSGA-II state, in `NSGA2.state_dict` form
    journal_sha256: str | None = None  # of the first `rows` journal lines; None in older checkpoints
    format: str = CHECKPOINT_FORMAT
    version: int = CHECKPOINT_VERSION

    @property
    def finished(self) -> bool:
        """Whether the experiment ran to its end (nothing is left to resume)."""
        return self.status == ExperimentStatus.SUCCEEDED

    def to_dict(self) -> CheckpointDocument:
        """The JSON form written to state/checkpoint.json, sealed by its own sha256 (`_content_digest`)."""
        data: CheckpointDocument = {
            "format": self.format,
            "version": self.version,
            "fingerprint": self.fingerprint,
            "status": self.status.value,
            "feature_key": self.feature_key,
            "mask_length": self.mask_length,
            "rows": self.rows,
            "elapsed_s": self.elapsed_s,
            "runs": list(self.runs),
        }
        if self.journal_sha256 is not None:
            data[JOURNAL_DIGEST_KEY] = self.journal_sha256
        data[SELF_DIGEST_KEY] = _content_digest(data)
        return data

    def write(self, path: StoragePath) -> None:
        """Replace the checkpoint file atomically, keeping the one it replaces beside it.

        The kept one (`previous_path`) is what a resume falls back to when this one is found damaged: the
        journal lines past it are produced again from the ledger, so nothing is trained twice. Locally the
        new file is renamed over the old; on object storage it is one upload of the whole object (a PUT,
        which readers see whole or not at all), after a server-side copy keeps the previous one.

        Args:
            path: the results directory's `ResultsLayout.checkpoint`.

        """
        if path.exists():
            _keep_previous(path, previous_path(path))
        write_json_atomic(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Any) -> Checkpoint:
        """Validate a parsed checkpoint file.

        Args:
            data: the parsed JSON.

        Returns:
            The checkpoint.

        Raises:
            CheckpointError: another format or version, or a missing or mistyped field (named).

        """
        if not isinstance(data, dict):
            raise CheckpointError("the checkpoint is not a JSON object")
        # a flipped byte in a key name would otherwise hide a field (and with the digest, the check itself)
        unknown = sorted(set(data) - KNOWN_KEYS)
        if unknown:
            names = ", ".join(map(repr, unknown))
            raise CheckpointError(f"the checkpoint is damaged: unknown field(s) {names}")
        if SELF_DIGEST_KEY in data:
            content = {key: value for key, value in data.items() if key != SELF_DIGEST_KEY}
            if data[SELF_DIGEST_KEY] != _content_digest(content):
                raise CheckpointError("the checkpoint is damaged: its content does not match its sha256")
        if data.get("format") != CHECKPOINT_FORMAT or data.get("version") != CHECKPOINT_VERSION:
            raise CheckpointError("not a checkpoint of this evoprune version")
        for name in ("fingerprint", "rows", "runs", "feature_key", "mask_length", "status"):
            if name not in data:
                raise CheckpointError(f"the checkpoint lacks {name!r}")
        try:
            runs = data["runs"]
            if not isinstance(runs, list) or not all(isinstance(state, dict) for state in runs):
                raise TypeError("'runs' is not a list of search states")
            return cls(
                fingerprint=str(data["fingerprint"]),
                status=ExperimentStatus(data["status"]),
                feature_key=str(data["feature_key"]),
                mask_length=int(data["mask_length"]),
                rows=int(data["rows"]),
                # written since the first version, but read leniently as before: a missing one counts 0
                elapsed_s=float(data.get("elapsed_s", 0.0)),
                runs=tuple(runs),
                journal_sha256=_optional_str(data.get(JOURNAL_DIGEST_KEY)),
            )
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"the checkpoint is corrupt: {error}") from None

    @classmethod
    def read(cls, path: StoragePath) -> Checkpoint:
        """Read and validate a checkpoint file.

        Args:
            path: state/checkpoint.json.

        Returns:
            The checkpoint.

        Raises:
            CheckpointError: missing, not JSON, or not a valid checkpoint.

        """
        try:
            return cls.from_dict(read_json(path))
        except CheckpointError as error:
            raise CheckpointError(f"{path}: {error}") from None

    @classmethod
    def read_or_previous(cls, path: StoragePath) -> Checkpoint:
        """Read a checkpoint, falling back to the one it replaced when it is damaged or missing.

        A checkpoint is replaced after every step; the one before vouches for fewer journal lines, and a
        resume from it produces the steps since again (from the ledger, nothing trained twice) with the
        same result.

        Args:
            path: state/checkpoint.json.

        Returns:
            The checkpoint, or the previous one (a warning is logged).

        Raises:
            CheckpointError: neither can be read; the message names both files and what to do.

        """
        try:
            return cls.read(path)
        except CheckpointError as error:
            previous = previous_path(path)
            if not previous.exists():
                raise CheckpointError(f"{error}; {RESTART_ADVICE}") from None
            try:
                fallback = cls.read(previous)
            except CheckpointError as second:
                raise CheckpointError(f"{error}, and {second}; {RESTART_ADVICE}") from None
            log.warning("%s; resuming from %s and the journal instead", error, previous)
            return fallback

    @classmethod
    def read_if_present(cls, path: StoragePath) -> Checkpoint | None:
        """The checkpoint, or None when there is none or it cannot be read (a directory to start afresh).

        Args:
            path: state/checkpoint.json.

        Returns:
            The checkpoint, or None.

        """
        if not path.exists() and not previous_path(path).exists():
            return None
        try:
            return cls.read_or_previous(path)
        except CheckpointError:
            return None


def previous_path(path: StoragePath) -> StoragePath:
    """Where the checkpoint replaced by the latest one is kept (state/checkpoint.previous.json)."""
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def _keep_previous(path: StoragePath, previous: StoragePath) -> None:
    if isinstance(path, ObjectPath) and isinstance(previous, ObjectPath):
        path.copy_to(previous)  # a server-side copy: the previous object appears whole, as an upload does
        return
    assert isinstance(path, Path) and isinstance(previous, Path)
    # a hard link keeps the old content without copying it and leaves `path` in place for readers
    staged = previous.with_name(f".{previous.name}.link")
    staged.unlink(missing_ok=True)
    try:
        os.link(path, staged)
    except OSError:
        staged.write_bytes(path.read_bytes())  # a filesystem without hard links
    os.replace(staged, previous)


def _content_digest(data: object) -> str:
    # the compact JSON that write_json_atomic writes: equal values give equal text, so equal digests
    return hashlib.sha256(json.dumps(data, separators=(",", ":")).encode()).hexdigest()


def _optional_str(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"{JOURNAL_DIGEST_KEY!r} is not a string")


def read_json(path: StoragePath) -> Any:
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
    resume and produced again identically. The running sha256 of the lines (`sha256`) goes into each
    checkpoint, so a damaged line is found on resume rather than read as another result.

    Object storage cannot append: there the journal's text is kept in memory and each append uploads it
    whole (one atomic PUT), so the object always ends on a complete line.
    """

    def __init__(self, path: StoragePath) -> None:
        self.path = path
        self.count = 0
        self._digest = hashlib.sha256()
        # the whole journal as uploaded last, when it lives on object storage
        self._uploaded = bytearray()

    @property
    def sha256(self) -> str:
        """The sha256 of the `count` lines written or loaded so far."""
        return self._digest.hexdigest()

    def append(self, records: list[EvaluationRowRecord]) -> None:
        """Append records durably.

        Args:
            records: evaluation rows in their JSON form (`EvaluationRow.to_dict`).

        """
        if not records:
            return
        text = _lines(records)
        if isinstance(self.path, ObjectPath):
            self.path.write_bytes(bytes(self._uploaded + text.encode("utf-8")))
            self._uploaded += text.encode("utf-8")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        self._digest.update(text.encode("utf-8"))
        self.count += len(records)

    def read(self, committed: int, sha256: str | None = None) -> list[EvaluationRowRecord]:
        """Read the first `committed` records, checked against the checkpoint's digest; the file is untouched.

        Args:
            committed: how many records the checkpoint vouches for.
            sha256: the checkpoint's digest of those lines (None for a checkpoint written before digests).

        Returns:
            Those records.

        Raises:
            CheckpointError: fewer valid records than `committed`, or lines that differ from those the
                checkpoint vouched for; the message names the file and what to do.

        """
        if committed <= 0:
            return []
        try:
            lines = self.path.read_bytes().split(b"\n")
        except OSError as error:
            raise CheckpointError(f"{self.path} is unreadable: {error}; {RESTART_ADVICE}") from None
        records: list[EvaluationRowRecord] = []
        for line in lines[:committed]:
            try:
                records.append(json.loads(line))
            except ValueError:
                break
        if len(records) < committed:
            raise CheckpointError(
                f"{self.path} is damaged: it holds {len(records)} valid records but the checkpoint "
                f"vouches for {committed}; {RESTART_ADVICE}"
            )
        if sha256 is not None:
            digest = hashlib.sha256(b"".join(line + b"\n" for line in lines[:committed])).hexdigest()
            if digest != sha256:
                raise CheckpointError(
                    f"{self.path} is damaged: its first {committed} records are not those the checkpoint "
                    f"vouches for (sha256 differs); {RESTART_ADVICE}"
                )
        return records

    def load(self, committed: int, sha256: str | None = None) -> list[EvaluationRowRecord]:
        """Read the first `committed` records (see `read`) and cut the file back to them.

        Args:
            committed: how many records the checkpoint vouches for.
            sha256: the checkpoint's digest of those lines, when it has one.

        Returns:
            Those records.

        Raises:
            CheckpointError: see `read`.

        """
        records = self.read(committed, sha256)
        text = _lines(records)
        write_atomic(self.path, text)
        self._uploaded = bytearray(text.encode("utf-8")) if isinstance(self.path, ObjectPath) else bytearray()
        self.count = len(records)
        self._digest = hashlib.sha256(text.encode("utf-8"))
        return records


def _lines(records: list[EvaluationRowRecord]) -> str:
    return "".join(json.dumps(record, separators=(",", ":")) + "\n" for record in records)
