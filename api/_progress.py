"""The terminal's progress bar of a running experiment, fed by its events (the CLI and `evoprune.run`)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from evoprune.shared.events import Event


class ProgressBar:
    """The terminal's view of an experiment: a tqdm bar fed by events."""

    def __init__(self, total: int, done: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=total,
            initial=done,
            unit="eval",
            file=sys.stderr,
            dynamic_ncols=True,
            desc="evaluations",
            mininterval=0.5,
        )
        self._hits = 0
        self._best_accuracy = float("nan")
        self._hypervolume = 0.0

    def __call__(self, event: Event) -> None:
        from evoprune.shared.events import EvaluationFinished, ExperimentSucceeded, FrontChanged

        if isinstance(event, EvaluationFinished):
            self._hits += event.cached
            if not event.objectives[0] <= self._best_accuracy:
                self._best_accuracy = event.objectives[0]
            self._show(refresh=False)
            self._bar.update(1)
        elif isinstance(event, FrontChanged) and event.run == -1:
            # a batch's front changes come after its evaluations: shown now, or the bar lags one batch
            self._hypervolume = event.hypervolume
            self._show(refresh=False)
        elif isinstance(event, ExperimentSucceeded):
            # the summary's number (summary.json) is the one the bar ends on
            self._hypervolume = event.hypervolume
            self._show(refresh=True)

    def _show(self, refresh: bool) -> None:
        self._bar.set_postfix(
            hits=self._hits,
            best_acc=f"{self._best_accuracy:.4f}",
            hv=f"{self._hypervolume:.4f}",
            refresh=refresh,
        )

    def close(self) -> None:
        """End the bar's line on the terminal."""
        self._bar.close()
