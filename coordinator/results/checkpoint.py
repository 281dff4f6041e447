"""Crash-safe files of an experiment: its typed checkpoint (state/checkpoint.json) and append-only journal."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evoprune.shared.atomic_files import write_atomic, write_json_atomic
from evoprune.shared.events import ExperimentStatus

CHECKPOINT_FORMAT = "evoprune-experiment"
CHECKPOINT_VERSION = 1


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
    runs: tuple[dict[str, Any], ...]  # each run's NSGA-II state, in `NSGA2.state_dict` form
    format: str = CHECKPOINT_FORMAT
    version: int = CHECKPOINT_VERSION

    @property
    def finished(self) -> bool:
        """Whether the experiment ran to its end (nothing is left to resume)."""
        return self.status == ExperimentStatus.SUCCEEDED

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to state/checkpoint.json (key order kept, so files stay byte-equal)."""
        return {
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

    def write(self, path: Path) -> None:
        """Replace the checkpoint file atomically.

        Args:
            path: the results directory's `ResultsLayout.checkpoint`.

        """
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
            )
        except (TypeError, ValueError) as error:
            raise CheckpointError(f"the checkpoint is corrupt: {error}") from None

    @classmethod
    def read(cls, path: Path) -> Checkpoint:
        """Read and validate a checkpoint file.

        Args:
            path: state/checkpoint.json.

        Returns:
            The checkpoint.

        Raises:
            CheckpointError: missing, not JSON, or not a valid checkpoint.

        """
        return cls.from_dict(read_json(path))

    @classmethod
    def read_if_present(cls, path: Path) -> Checkpoint | None:
        """The checkpoint, or None when there is none or it cannot be read (a directory to start afresh).

        Args:
            path: state/checkpoint.json.

        Returns:
            The checkpoint, or None.

        """
        if not path.exists():
            return None
        try:
            return cls.read(path)
        except CheckpointError:
            return None


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
