"""A fitness cache that rides out outages of the shared cache behind it (Redis restarts)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from evoprune.shared.fitness_cache import FitnessCache
from evoprune.shared.objectives import Evaluation

log = logging.getLogger(__name__)


class ResilientFitnessCache(FitnessCache):
    """Wraps a shared cache: while it cannot be reached, lookups miss and writes wait to be sent again.

    A miss only costs a training that another experiment may already have paid for; a write is never
    dropped: it stays pending until the shared cache takes it. The experiment's own ledger on disk holds
    every evaluation regardless, so nothing depends on this cache being up.
    """

    def __init__(self, inner: FitnessCache, errors: tuple[type[BaseException], ...] = (Exception,)) -> None:
        self._inner = inner
        self._errors = errors
        self._unsent: dict[str, Evaluation] = {}
        self.failures = 0

    def _failed(self, what: str, error: BaseException) -> None:
        if self.failures == 0:
            log.warning("the shared fitness cache failed (%s: %s); carrying on without it", what, error)
        self.failures += 1

    def _send_unsent(self) -> None:
        if not self._unsent:
            return
        try:
            self._inner.put_many(self._unsent)
        except self._errors as error:
            self._failed("write", error)
            return
        self._unsent = {}

    def get_many(self, keys: Iterable[str]) -> dict[str, Evaluation]:
        wanted = list(keys)
        self._send_unsent()
        found = {key: self._unsent[key] for key in wanted if key in self._unsent}
        try:
            found.update(self._inner.get_many([key for key in wanted if key not in found]))
        except self._errors as error:
            self._failed("lookup", error)
        return found

    def put_many(self, entries: Mapping[str, Evaluation]) -> None:
        self._unsent.update(entries)
        self._send_unsent()

    @property
    def unsent(self) -> int:
        """Entries still waiting for the shared cache."""
        return len(self._unsent)

    def describe(self) -> str:
        return self._inner.describe()

    def close(self) -> None:
        self._send_unsent()
        self._inner.close()
