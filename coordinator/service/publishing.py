"""Publishing a running experiment to the store: its events, record and fronts, through outages."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import numpy as np

from evoprune.coordinator.service.live_view import LiveView
from evoprune.shared.evaluation_row import EvaluationRow
from evoprune.shared.events import Event, FrontChanged
from evoprune.shared.pareto import ParetoArchive
from evoprune.shared.store import (
    ExperimentRecord,
    FrontState,
    Store,
    StoredEvent,
    StoreError,
)

PUBLISH_INTERVAL_S = 0.25
# how long the final publish keeps trying before the runner gives up on the store (the results directory
# still holds everything, and the API rebuilds the record from it)
FINAL_PUBLISH_DEADLINE_S = 600.0
RETRY_PAUSE_MAX_S = 5.0

log = logging.getLogger(__name__)


def front_events(rows: Sequence[EvaluationRow], runs: int) -> list[FrontChanged]:
    """The fronts of every run and of all runs together after `rows`, as front events.

    Args:
        rows: journal rows, in journal order.
        runs: the number of runs.

    Returns:
        One event per run with rows, then the aggregated one (run -1).

    """
    archives = {run: ParetoArchive() for run in [*range(runs), -1]}
    counts = dict.fromkeys(archives, 0)
    for row in rows:
        point = np.array([row.minimisation()])
        for run in (row.run, -1):
            counts[run] += 1
            if row.full_fidelity:  # a screened-out mask counts as an evaluation but joins no front
                archives[run].add(point, [row.mask])
    return [
        FrontChanged.of_archive(run, archive, counts[run]) for run, archive in archives.items() if counts[run]
    ]


class StorePublisher:
    """Subscribes to an experiment's events and publishes them, with its record and fronts, to a store.

    Events are numbered here and published in order from a background thread every PUBLISH_INTERVAL_S,
    so the search never waits for the store. When the store is down the events wait in memory (the
    experiment's journal on disk holds them anyway) and go out, in order and exactly once, when it is
    back; when it comes back empty (a Redis restart without persistence) everything is published again.
    """

    def __init__(
        self,
        store: Store,
        record: ExperimentRecord,
        front: FrontState,
        history: Sequence[StoredEvent] = (),
        interval_s: float = PUBLISH_INTERVAL_S,
    ) -> None:
        self.store = store
        self.view = LiveView(record, front)
        self.interval_s = interval_s
        # everything already in the store, kept to publish again if the store loses its data
        self._published: list[StoredEvent] = list(history)
        self._pending: list[StoredEvent] = []
        self._seq = max([record.last_event_seq, *(seq for seq, _ in history)])
        self._front_dirty = True
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.outage_since: float | None = None
        self.published_once = False

    @property
    def experiment_id(self) -> str:
        return self.view.record.id

    @property
    def terminal(self) -> bool:
        """Whether a terminal event (done, failed, cancelled) has been recorded."""
        return self.view.record.terminal

    # ---- the bus side ----------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """Record one event for publishing (the bus's subscriber).

        Args:
            event: the experiment's next event.

        """
        with self._lock:
            published = self.view.apply(event)
            self._seq += 1
            self.view.record.last_event_seq = self._seq
            self._pending.append((self._seq, published.to_dict()))
            self._front_dirty |= isinstance(event, FrontChanged)

    def catch_up(self, rows: Sequence[EvaluationRow], runs: int) -> None:
        """After a restart: publish the evaluations the journal holds beyond what the store has seen.

        Args:
            rows: every journal row the checkpoint vouches for, in journal order.
            runs: the experiment's run count.

        """
        done = self.view.record.evaluations_done
        for row in rows[done:]:
            self(row.event())
        if len(rows) > done or not self.view.front.fronts:
            for event in front_events(rows, runs):
                self(event)

    # ---- the store side --------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Publish what is pending now.

        Returns:
            True when the store holds everything recorded so far.

        """
        with self._flush_lock:
            with self._lock:
                pending = list(self._pending)
                record, front = self.view.copies()
                send_front = self._front_dirty
                self._front_dirty = False
            try:
                stored = self.store.publish(
                    self.experiment_id, pending, record, front if send_front else None
                )
                if not stored:
                    # the store lost this experiment: publish its whole history again
                    log.warning("experiment %s: the store lost its record; publishing it again", record.id)
                    self.store.publish(
                        self.experiment_id, self._published + pending, record, front, expect_existing=False
                    )
            except StoreError as error:
                with self._lock:
                    self._front_dirty |= send_front
                if self.outage_since is None:
                    self.outage_since = time.monotonic()
                    log.warning(
                        "experiment %s: the store is unavailable (%s); events are kept until it is back",
                        record.id,
                        error,
                    )
                return False
            if self.outage_since is not None:
                log.warning(
                    "experiment %s: the store is back after %.1f s; %d events published",
                    record.id,
                    time.monotonic() - self.outage_since,
                    len(pending),
                )
                self.outage_since = None
            with self._lock:
                self._published.extend(pending)
                self._pending = self._pending[len(pending) :]
                self.published_once = True
                return not self._pending

    def start(self) -> None:
        """Start publishing in the background."""
        self._thread = threading.Thread(target=self._loop, name=f"publish-{self.experiment_id}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            with self._lock:
                idle = not self._pending and not self._front_dirty
            if not idle:
                self.flush()

    def stop(self, deadline_s: float = FINAL_PUBLISH_DEADLINE_S) -> bool:
        """Stop the background thread and publish the rest, retrying until `deadline_s` has passed.

        Args:
            deadline_s: the longest to keep trying.

        Returns:
            Whether everything reached the store.

        """
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        deadline = time.monotonic() + deadline_s
        pause = 0.1
        while True:
            if self.flush():
                return True
            if time.monotonic() + pause > deadline:
                log.error(
                    "experiment %s: the store stayed unavailable; its state is in the results directory",
                    self.experiment_id,
                )
                return False
            time.sleep(pause)
            pause = min(RETRY_PAUSE_MAX_S, pause * 2)
