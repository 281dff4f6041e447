"""Resuming the experiments whose runners are gone (the Ray cluster restarted under the API)."""

from __future__ import annotations

import logging

from evoprune.coordinator.service.launcher import Launcher
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
