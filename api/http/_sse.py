"""Server-Sent Events of one experiment: a snapshot, then its stored events live, then `done`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import TypeVar

import anyio
from fastapi import Request
from pydantic import BaseModel

from evoprune.api.http._sse_feed import BATCH, STORE_RETRY_S, WAIT_S, ExperimentFeed, client_call, following
from evoprune.api.http.event_schemas import (
    DoneEvent,
    EvaluationEvent,
    FrontEvent,
    RunFinishedEvent,
    StatusEvent,
)
from evoprune.api.http.schemas import ExperimentPublic, FrontPublic
from evoprune.shared.events import (
    EvaluationFinished,
    Event,
    ExperimentEnded,
    FrontChanged,
    RunFinished,
    StatusChanged,
    event_from_dict,
)
from evoprune.shared.store import ExperimentRecord, Store, StoredEvent, StoreError

KEEP_ALIVE_S = 15.0
T = TypeVar("T")


def message(event: str, data: str, event_id: str | None = None) -> bytes:
    """One SSE message.

    Args:
        event: the event name.
        data: one line of JSON.
        event_id: the id clients send back as Last-Event-ID (None: no id line).

    Returns:
        The encoded message, blank line included.

    """
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {data}\n\n".encode()


def public_event(event: Event) -> tuple[str, str] | None:
    """The SSE name and JSON of a non-terminal event; None for kinds clients are not sent.

    Args:
        event: the stored event.

    Returns:
        (event name, JSON) or None.

    """
    payload: BaseModel
    if isinstance(event, EvaluationFinished):
        payload = EvaluationEvent.of(event)
    elif isinstance(event, FrontChanged):
        payload = FrontEvent.of(event)
    elif isinstance(event, RunFinished):
        payload = RunFinishedEvent.of(event)
    elif isinstance(event, StatusChanged):
        payload = StatusEvent.of(event)
    else:
        return None
    return event.kind.value, payload.model_dump_json()


class EventStream:
    """Streams one experiment's events to one client, from the experiment's shared feed."""

    def __init__(self, store: Store, experiment_id: str, resume_after: int | None) -> None:
        self.store = store
        self.experiment_id = experiment_id
        self.resume_after = resume_after

    async def _next_events(self, feed: ExperimentFeed, cursor: int) -> list[StoredEvent]:
        if cursor >= feed.start:
            return feed.after(cursor)
        # behind what the feed keeps (resumed from long ago, or joined a feed that started later): catch up
        # from the store with short reads, then follow the feed
        events = await client_call(self.store.read_events, self.experiment_id, cursor, BATCH)
        return events or feed.after(cursor)

    async def _nothing_left(self, cursor: int, latest: ExperimentRecord) -> bool:
        """Whether a client at `cursor` has had every event the store holds of an experiment that ended."""
        if cursor >= latest.last_event_seq:
            return True
        # behind the record: its events may still be on their way to the feed, or gone for good (the record
        # was restored from its results directory after Redis lost the stream); only the store can say which
        try:
            return not await client_call(self.store.read_events, self.experiment_id, cursor, 1)
        except StoreError:
            return False

    async def messages(self, request: Request) -> AsyncIterator[bytes]:
        """The encoded messages, ending after `done` (or when the client goes away).

        Args:
            request: for noticing a client that disconnected.

        Yields:
            SSE messages and keep-alive comments.

        """
        while True:
            try:
                snapshot = await client_call(self.store.snapshot, self.experiment_id)
                break
            except StoreError as error:
                # the headers are sent: say why nothing comes yet, and try again while the client listens
                yield f": the store is unavailable ({error}); retrying\n\n".encode()
                if await request.is_disconnected():
                    return
                await anyio.sleep(STORE_RETRY_S)
        if snapshot is None:
            return
        record = snapshot.record
        if self.resume_after is None:
            snapshot_json = json.dumps(
                {
                    "experiment": ExperimentPublic.of(record).model_dump(mode="json"),
                    "front": FrontPublic.of(record, snapshot.front).model_dump(mode="json"),
                }
            )
            yield message("snapshot", snapshot_json, self.store.event_id(record.last_event_seq))
            cursor = record.last_event_seq
        else:
            cursor = self.resume_after
        async with following(self.store, self.experiment_id, cursor) as feed:
            quiet_since = time.monotonic()
            while not await request.is_disconnected():
                version = feed.version
                try:
                    events = await self._next_events(feed, cursor)
                except StoreError as error:
                    yield f": the store is unavailable ({error}); retrying\n\n".encode()
                    await anyio.sleep(STORE_RETRY_S)
                    continue
                for seq, data in events:
                    cursor = seq
                    event = event_from_dict(data)
                    if isinstance(event, ExperimentEnded):
                        final = await feed.final_record()
                        payload = DoneEvent.of(final or record, event)
                        yield message("done", payload.model_dump_json(), self.store.event_id(seq))
                        return
                    converted = public_event(event)
                    if converted is not None:
                        yield message(converted[0], converted[1], self.store.event_id(seq))
                if events:
                    quiet_since = time.monotonic()
                    continue
                if feed.error is not None:
                    yield f": the store is unavailable ({feed.error}); retrying\n\n".encode()
                # a record can end with no terminal event after the cursor: the client resumed after `done`,
                # or the record was rebuilt from a results directory. A record the store has lost (Redis
                # restarted empty) ends nothing: its runner may still be publishing.
                latest = feed.latest
                if latest is not None and latest.terminal and await self._nothing_left(cursor, latest):
                    yield message("done", DoneEvent.of(latest).model_dump_json())
                    return
                if time.monotonic() - quiet_since >= KEEP_ALIVE_S:
                    quiet_since = time.monotonic()
                    yield b": keep-alive\n\n"
                await feed.changed(version, WAIT_S)
