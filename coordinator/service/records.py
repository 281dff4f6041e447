"""Experiment records of the service: made at submission, ended without a runner, copied, restored."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.service.live_view import LiveView
from evoprune.shared.config import ExperimentConfig
from evoprune.shared.events import Event, ExperimentCancelled, ExperimentFailed
from evoprune.shared.sealed_json import read_sealed_json, write_sealed_json
from evoprune.shared.storage import ObjectPath, StoragePath
from evoprune.shared.store import (
    ExperimentRecord,
    FrontState,
    RunProgress,
    Store,
    StoreError,
    StoreSpec,
    valid_experiment_id,
)

log = logging.getLogger(__name__)
# a results directory being removed is first renamed to this prefix (not an id, so never restored or served)
DELETED_PREFIX = ".deleted-"


def new_record(
    experiment_id: str, config: ExperimentConfig, results_root: StoragePath, name: str | None = None
) -> ExperimentRecord:
    """The record of an experiment just submitted: queued, nothing evaluated yet.

    Args:
        experiment_id: its new id.
        config: its validated config.
        results_root: the folder (or object-storage prefix) that holds the service's results directories.
        name: a display name; None: the config's name.

    Returns:
        The record, not yet stored.

    """
    search = config.search
    results = results_root / experiment_id
    return ExperimentRecord(
        id=experiment_id,
        name=name or config.name,
        config=config.model_dump(mode="json"),
        # an object-storage prefix as its URI (s3://bucket/prefix/id): runners and routes open either kind
        results_dir=str(results.resolve() if isinstance(results, Path) else results),
        evaluations_total=search.runs * search.max_evaluations,
        runs=[
            RunProgress(run=run, seed=search.seed + run, evaluations_total=search.max_evaluations)
            for run in range(search.runs)
        ],
    )


def end_without_runner(
    store: Store, record: ExperimentRecord, message: str | None = None
) -> ExperimentRecord:
    """Record the end of an experiment whose runner does not exist (it could not start, or is gone).

    Args:
        store: the store.
        record: the experiment's current record.
        message: the error when it failed; None: it was cancelled.

    Returns:
        The updated record.

    """
    event: Event = (
        ExperimentCancelled(evaluations=record.evaluations_done, results_dir=record.results_dir)
        if message is None
        else ExperimentFailed(message=message)
    )
    event = LiveView(record, FrontState()).apply(event)
    record.last_event_seq += 1
    store.publish(record.id, [(record.last_event_seq, event.to_dict())], record)
    return record


def write_record_copy(layout: ResultsLayout, record: ExperimentRecord, front: FrontState) -> None:
    """Keep the final record and fronts in the results directory: the API rebuilds a lost record from it.

    Args:
        layout: the experiment's results directory.
        record: its record.
        front: its fronts.

    """
    try:
        # sealed: a changed byte would otherwise bring back another record than the one that ended
        write_sealed_json(layout.record_copy, {"record": record.to_dict(), "front": front.to_dict()})
    except OSError as error:
        log.error("cannot write %s: %s", layout.record_copy, error)


def restore_lost_records(store: Store, spec: StoreSpec, only: str | None = None) -> list[str]:
    """Put back records the store lost, from the copies in the results directories.

    That happens when Redis restarts without persistence after the experiments' runners had ended.

    Args:
        store: the store.
        spec: the store's spec (its data directory holds the results directories).
        only: restore this experiment only (None: every results directory).

    Returns:
        The ids restored.

    """
    root = spec.results_root
    folders = [root / only] if only is not None else _folders(root)
    restored = []
    for folder in folders:
        path = ResultsLayout(folder).record_copy
        if not _has_copy(folder) or store.get(folder.name) is not None:
            continue
        try:
            state = read_sealed_json(path)  # a copy written before seals is read as it is
            record = ExperimentRecord.from_dict(state["record"])
            front = FrontState.from_dict(state["front"])
        except (OSError, ValueError, KeyError, TypeError, StoreError) as error:
            log.error(
                "cannot restore %s: %s; the experiment stays unlisted until it is restored", path, error
            )
            continue
        if record.id != folder.name:
            continue
        # no events: the stream of a restored experiment is its snapshot and `done`
        store.publish(record.id, [], record, front, expect_existing=False)
        restored.append(record.id)
    return restored


def lost_record_ids(known: set[str], spec: StoreSpec) -> list[str]:
    """Results directories with a record copy whose experiment the store does not list.

    One directory listing, no store call: cheap enough for every `GET /experiments`.

    Args:
        known: the ids the store lists.
        spec: where the results directories are.

    Returns:
        The ids to restore (`restore_lost_records(..., only=id)`).

    """
    return [
        folder.name
        for folder in _folders(spec.results_root)
        if folder.name not in known and valid_experiment_id(folder.name) and _has_copy(folder)
    ]


# The results root may be out of reach (object storage down, a wrong endpoint): the store's own records still
# answer, and the copies are looked for again at the next listing.


def _folders(root: StoragePath) -> list[StoragePath]:
    # one listing; on object storage a missing prefix lists nothing, so no separate existence check
    try:
        if isinstance(root, Path) and not root.is_dir():
            return []
        return sorted(root.iterdir(), key=str)
    except OSError as error:
        log.warning("cannot list the results root %s: %s", root, error)
        return []


def _has_copy(folder: StoragePath) -> bool:
    try:
        return ResultsLayout(folder).record_copy.is_file()
    except OSError as error:
        log.warning("cannot look for a record copy in %s: %s", folder, error)
        return False


def remove_experiment(store: Store, spec: StoreSpec, experiment_id: str) -> bool:
    """Remove an ended experiment for good: its record in the store and its results directory.

    The results directory is first renamed aside, so nothing serves or restores it any more; then the store
    removes the record (refusing an active one, when the directory is put back); then the directory is
    deleted. A removal cut short by a crash leaves either the record (remove it again) or a renamed folder
    that the next removal sweeps; never a record copy that would bring the experiment back. On object
    storage, which cannot rename, a marker object and the record copy's deletion take the rename's place.

    Args:
        store: the store.
        spec: where the results directories are; only `results_root/<id>` is removed, never a directory
            elsewhere that a record names.
        experiment_id: the experiment.

    Returns:
        False when neither the store nor the results root held it.

    Raises:
        ExperimentActiveError: it is queued or running; nothing was removed.
        StoreError: the store failed; the results directory is back in place.

    """
    if not valid_experiment_id(experiment_id):
        return False
    root = spec.results_root
    if isinstance(root, ObjectPath):
        return _remove_from_object_storage(store, root, experiment_id)
    results = root / experiment_id
    aside = root / f"{DELETED_PREFIX}{experiment_id}-{os.getpid()}-{threading.get_ident()}"
    # a link is removed as a link: what it points to is not this experiment's to delete
    moved = results.is_dir() and not results.is_symlink()
    if moved:
        results.rename(aside)
    try:
        removed = store.delete(experiment_id)
    except BaseException:
        if moved:
            aside.rename(results)
        raise
    if results.is_symlink():
        results.unlink()
    for leftover in root.glob(f"{DELETED_PREFIX}*") if root.is_dir() else []:
        shutil.rmtree(leftover, ignore_errors=True)
    return removed or moved


def _remove_from_object_storage(store: Store, root: ObjectPath, experiment_id: str) -> bool:
    """`remove_experiment` where object storage has no rename: a marker and the record copy go first.

    The marker (`root/.deleted-<id>`) says a removal began; the record copy is deleted before the record,
    so nothing restores the experiment meanwhile, and is put back when the store refuses. A removal cut
    short leaves the record (remove it again) or a marker whose objects the next removal sweeps; an
    experiment whose record copy is there is never swept.
    """
    results = root / experiment_id
    marker = root / f"{DELETED_PREFIX}{experiment_id}"
    copy = ResultsLayout(results).record_copy
    marker.write_bytes(b"")
    saved: bytes | None = None
    try:
        try:
            saved = copy.read_bytes()
        except FileNotFoundError:
            saved = None
        copy.unlink(missing_ok=True)
        removed = store.delete(experiment_id)
    except BaseException:
        if saved is not None:
            copy.write_bytes(saved)
        marker.unlink(missing_ok=True)
        raise
    try:
        held = results.is_dir()
        results.remove_tree()
        marker.unlink(missing_ok=True)
        _sweep(store, root)
    except OSError as error:
        # the record is gone and nothing restores it; the marker lets the next removal finish the job
        log.warning(
            "experiment %s is removed but some of its objects are left for now: %s", experiment_id, error
        )
        return True
    return removed or held or saved is not None


def _sweep(store: Store, root: ObjectPath) -> None:
    """Finish the removals a marker says were cut short (the store no longer holds them)."""
    for leftover in root.iterdir():
        swept = leftover.name.removeprefix(DELETED_PREFIX)
        if not leftover.name.startswith(DELETED_PREFIX) or not valid_experiment_id(swept):
            continue
        # a marker whose record is still in the store, or whose record copy is back, belongs to a removal
        # under way or refused
        if store.get(swept) is None and not ResultsLayout(root / swept).record_copy.is_file():
            (root / swept).remove_tree()
            leftover.unlink(missing_ok=True)
