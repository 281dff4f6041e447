"""One store reader per followed experiment, fanning its events out to every SSE client of this process.

Before, each waiting client held a thread and a Redis connection in a blocking stream read: a hundred or so
clients exhausted the pool and the server answered 503 to everything else. Now the number of blocking reads
is the number of experiments being followed, whatever the number of clients.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio

from evoprune.shared.store import ExperimentRecord, Store, StoredEvent, StoreError

T = TypeVar("T")
WAIT_S = 1.0
BATCH = 500
STORE_RETRY_S = 1.0
# events kept in memory per experiment for clients that lag behind the reader; older ones are read again
# from the store by the client that needs them
BUFFER_EVENTS = 5000
# blocking reads at once (one per followed experiment), and the short calls of clients (snapshot,
# catching up): both bounded, so the store's connections are too
FEED_THREADS = 256
CLIENT_THREADS = 16
FINAL_RECORD_WAIT_S = 2.0


class _Limiters:
    def __init__(self) -> None:
        self.feeds = anyio.CapacityLimiter(FEED_THREADS)
        self.clients = anyio.CapacityLimiter(CLIENT_THREADS)
        self.registry: dict[tuple[int, str], ExperimentFeed] = {}


_per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Limiters] = weakref.WeakKeyDictionary()


def _loop_state() -> _Limiters:
    loop = asyncio.get_running_loop()
    if loop not in _per_loop:
        _per_loop[loop] = _Limiters()
    return _per_loop[loop]


async def client_call(function: Callable[..., T], *args: Any) -> T:
    """A short store call for one client (a snapshot, a catch-up read), in a bounded set of threads."""
    return await anyio.to_thread.run_sync(
        function, *args, limiter=_loop_state().clients, abandon_on_cancel=True
    )


class ExperimentFeed:
    """The events of one experiment as one reader takes them from the store, for all its clients.

    The buffer holds every event with a sequence number in (`start`, `cursor`]. `latest` is the record as
    last read while no events came (None until read, or when the store has lost it).
    """

    def __init__(self, store: Store, experiment_id: str, after: int) -> None:
        self.store = store
        self.experiment_id = experiment_id
        self.start = after
        self.cursor = after
        self._seqs: list[int] = []
        self._events: list[StoredEvent] = []
        self.latest: ExperimentRecord | None = None
        self.error: str | None = None
        self.version = 0
        self.subscribers = 0
        self._changed = asyncio.Event()
        self._final: ExperimentRecord | None = None
        self._final_lock = asyncio.Lock()
        self.task: asyncio.Task[None] | None = None

    def after(self, cursor: int) -> list[StoredEvent]:
        """Buffered events after `cursor` (which must be at least `start`), at most BATCH."""
        index = bisect.bisect_right(self._seqs, cursor)
        return self._events[index : index + BATCH]

    async def changed(self, version: int, timeout_s: float) -> None:
        """Return once the feed moved past `version`, or after `timeout_s`."""
        if self.version != version:
            return
        event = self._changed
        with anyio.move_on_after(timeout_s):
            await event.wait()

    def _publish(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def _read(self, function: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(
            function, *args, limiter=_loop_state().feeds, abandon_on_cancel=True
        )

    async def run(self) -> None:
        """Read the store until cancelled (when the last client leaves)."""
        while True:
            try:
                events = await self._read(
                    self.store.wait_events, self.experiment_id, self.cursor, WAIT_S, BATCH
                )
            except StoreError as error:
                self.error = str(error)
                self._publish()
                await anyio.sleep(STORE_RETRY_S)
                continue
            self.error = None
            if events:
                self._events.extend(events)
                self._seqs.extend(seq for seq, _ in events)
                self.cursor = events[-1][0]
                if len(self._events) > BUFFER_EVENTS:
                    dropped = len(self._events) - BUFFER_EVENTS
                    self.start = self._seqs[dropped - 1]
                    del self._events[:dropped], self._seqs[:dropped]
                self._publish()
                continue
            # quiet: read the record once for every client (has it ended without an event after theirs?)
            try:
                self.latest = await self._read(self.store.get, self.experiment_id)
            except StoreError as error:
                self.error = str(error)
            self._publish()

    async def final_record(self) -> ExperimentRecord | None:
        """The record once it is terminal (waited for briefly: the local store writes it just after `done`).

        Read once for all the clients that saw `done`.
        """
        async with self._final_lock:
            if self._final is not None:
                return self._final
            record = await client_call(self.store.get, self.experiment_id)
            deadline = time.monotonic() + FINAL_RECORD_WAIT_S
            while record is not None and not record.terminal and time.monotonic() < deadline:
                await anyio.sleep(0.02)
                record = await client_call(self.store.get, self.experiment_id)
            if record is not None and record.terminal:
                self._final = record
            return record


@contextlib.asynccontextmanager
async def following(store: Store, experiment_id: str, after: int) -> AsyncIterator[ExperimentFeed]:
    """The feed of an experiment, started by its first client and stopped when its last one leaves.

    Args:
        store: the store (feeds of different stores never mix).
        experiment_id: the experiment.
        after: the client's cursor; a new feed starts there.

    Yields:
        The shared feed.

    """
    registry = _loop_state().registry
    key = (id(store), experiment_id)
    feed = registry.get(key)
    if feed is None:
        feed = ExperimentFeed(store, experiment_id, after)
        registry[key] = feed
        feed.task = asyncio.create_task(feed.run(), name=f"evoprune-feed-{experiment_id}")
    feed.subscribers += 1
    try:
        yield feed
    finally:
        feed.subscribers -= 1
        if feed.subscribers == 0:
            registry.pop(key, None)
            if feed.task is not None:
                feed.task.cancel()


def followed_experiments() -> int:
    """How many experiments this event loop is reading for its SSE clients (for tests and health)."""
    return len(_loop_state().registry)
