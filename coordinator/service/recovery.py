"""Resuming the experiments whose runners are gone (the Ray cluster restarted under the API)."""

from __future__ import annotations

import logging
import threading

from evoprune.coordinator.service.launcher import Launcher
from evoprune.coordinator.service.records import end_without_runner
from evoprune.coordinator.service.runner import RUNNER_RESTARTS
from evoprune.shared.store import Store

log = logging.getLogger(__name__)


def recover(store: Store, launcher: Launcher, created_before: float | None = None) -> list[str]:
    """Resume experiments whose runner is gone (the Ray cluster restarted): from their checkpoints.

    Args:
        store: where the records are.
        launcher: starts runners.
        created_before: only experiments created before this time (those submitted since are being
            launched by their own request).

    Returns:
        The ids of the experiments started again.

    """
    resumed = []
    for record in store.records():
        if record.terminal or (created_before is not None and record.created_at >= created_before):
            continue
        if launcher.alive(record.id):
            continue
        log.warning("experiment %s has no runner; resuming it from its checkpoint", record.id)
        launcher.launch(record)
        resumed.append(record.id)
    return resumed


# how often the API looks for runners that died for good, and how many looks in a row must miss one: a runner
# being restarted by Ray keeps its name, so a miss means Ray gave up (RUNNER_RESTARTS) or it never started
WATCH_INTERVAL_S = 30.0
WATCH_MISSES = 2
# the API relaunches a runner that died for good this many times, then ends the experiment `failed`
WATCH_RELAUNCHES = 1


class RunnerWatch:
    """Finds running experiments whose runner is gone while the API runs, and relaunches or ends them.

    Ray restarts a crashed runner RUNNER_RESTARTS times; after that the actor is dead and, without this
    watch, its record would stay `running` until the API restarts. The watch relaunches it (it resumes from
    its checkpoint) WATCH_RELAUNCHES times per API process, then records it `failed` with the way to resume.
    """

    def __init__(
        self, store: Store, launcher: Launcher, misses: int = WATCH_MISSES, relaunches: int = WATCH_RELAUNCHES
    ) -> None:
        self.store = store
        self.launcher = launcher
        self.misses = misses
        self.relaunches = relaunches
        self._missed: dict[str, int] = {}
        self._relaunched: dict[str, int] = {}

    def check(self) -> list[str]:
        """Look once at every active experiment.

        Returns:
            The ids relaunched or ended by this look.

        """
        acted = []
        active = set(self.store.active_ids())
        self._missed = {key: count for key, count in self._missed.items() if key in active}
        for experiment_id in sorted(active):
            if self.launcher.alive(experiment_id):
                self._missed.pop(experiment_id, None)
                continue
            self._missed[experiment_id] = self._missed.get(experiment_id, 0) + 1
            if self._missed[experiment_id] < self.misses:
                continue
            record = self.store.get(experiment_id)
            if record is None or record.terminal:
                continue
            del self._missed[experiment_id]
            acted.append(experiment_id)
            if self._relaunched.get(experiment_id, 0) < self.relaunches:
                self._relaunched[experiment_id] = self._relaunched.get(experiment_id, 0) + 1
                log.warning("experiment %s lost its runner; resuming it from its checkpoint", experiment_id)
                self.launcher.launch(record)
                continue
            log.error("experiment %s lost its runner again; ending it failed", experiment_id)
            end_without_runner(
                self.store,
                record,
                f"its runner kept dying (Ray restarted it {RUNNER_RESTARTS} times, the API started it again "
                f"{self.relaunches} times); every finished evaluation is in {record.results_dir}: resume it "
                f"with `evoprune resume {record.results_dir}`",
            )
        return acted

    def run(self, stop: threading.Event, interval_s: float = WATCH_INTERVAL_S) -> None:
        """Check every `interval_s` until `stop` is set; a failed look (Ray or the store away) is retried."""
        while not stop.wait(interval_s):
            try:
                self.check()
            except Exception:  # Ray or the store unreachable: the next look tries again
                log.warning("could not look for lost runners", exc_info=True)
