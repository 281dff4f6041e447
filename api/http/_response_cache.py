"""Serialised responses of experiments, reused until the experiment publishes something new."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

from fastapi.responses import Response

from evoprune.shared.store import ExperimentRecord

ENTRIES = 512


class ResponseCache:
    """A bounded LRU of JSON bodies keyed by an experiment's version.

    A record's `last_event_seq` grows with every publish, so (id, last_event_seq, status) names one state
    of an experiment: a body built for it stays right until the next publish. Reads far outnumber
    publishes (a page polls, a runner publishes a few times a second at most), so most reads skip
    building and validating the models again.
    """

    def __init__(self, entries: int = ENTRIES) -> None:
        self._entries = entries
        self._bodies: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(record: ExperimentRecord, variant: Hashable) -> Hashable:
        return (record.id, record.last_event_seq, record.status, record.evaluations_done, variant)

    def cached(self, record: ExperimentRecord, variant: Hashable) -> Response | None:
        """The cached response for `record` in `variant`, or None.

        Args:
            record: the experiment as just read from the store.
            variant: what else the body depends on (the endpoint, its query).

        Returns:
            An application/json response, or None when there is none yet.

        """
        key = self._key(record, variant)
        with self._lock:
            body = self._bodies.get(key)
            if body is None:
                return None
            self._bodies.move_to_end(key)
        return Response(content=body, media_type="application/json")

    def json(self, record: ExperimentRecord, variant: Hashable, build: Callable[[], str] | str) -> Response:
        """The response for `record` in `variant`, built by `build` only when not cached.

        Args:
            record: the experiment as just read from the store.
            variant: what else the body depends on (the endpoint, its query).
            build: makes the JSON text (or is it).

        Returns:
            An application/json response.

        """
        cached = self.cached(record, variant)
        if cached is not None:
            return cached
        body = (build if isinstance(build, str) else build()).encode()
        with self._lock:
            self._bodies[self._key(record, variant)] = body
            while len(self._bodies) > self._entries:
                self._bodies.popitem(last=False)
        return Response(content=body, media_type="application/json")
