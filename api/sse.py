"""Server-Sent Events of one experiment: a snapshot, then its stored events live, then `done`."""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
from fastapi import Request
from pydantic import BaseModel

from evoprune.api.event_schemas import DoneEvent, EvaluationEvent, FrontEvent, RunFinishedEvent, StatusEvent
from evoprune.api.schemas import ExperimentPublic, FrontPublic
from evoprune.shared.events import (
    EvaluationFinished,
    Event,
    ExperimentEnded,
    FrontChanged,
    RunFinished,
    StatusChanged,
    event_from_dict,
)
from evoprune.shared.store import ExperimentRecord, Store, StoreError

WAIT_S = 1.0
KEEP_ALIVE_S = 15.0
STORE_RETRY_S = 1.0
BATCH = 500
FINAL_RECORD_WAIT_S = 2.0
# each waiting client holds a thread while it blocks on the store; these are not the request threads
WAITING_CLIENTS = 1000
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


_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def waiting_limiter() -> anyio.CapacityLimiter:
    """The thread limiter of waiting SSE clients, one per event loop (call it on the loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _limiters:
        _limiters[loop] = anyio.CapacityLimiter(WAITING_CLIENTS)
    return _limiters[loop]


class EventStream:
    """Streams one experiment's events to one client."""

    def __init__(self, store: Store, experiment_id: str, resume_after: int | None) -> None:
        self.store = store
        self.experiment_id = experiment_id
        self.resume_after = resume_after

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(
            function, *args, limiter=waiting_limiter(), abandon_on_cancel=True
        )

    async def _final_record(self) -> ExperimentRecord | None:
        # the local store writes the record just after the events: wait for it, so that a client that
        # has seen `done` always reads a finished record
        record = await self._call(self.store.get, self.experiment_id)
        deadline = time.monotonic() + FINAL_RECORD_WAIT_S
        while record is not None and not record.terminal and time.monotonic() < deadline:
            await anyio.sleep(0.02)
            record = await self._call(self.store.get, self.experiment_id)
        return record

    async def messages(self, request: Request) -> AsyncIterator[bytes]:
        """The encoded messages, ending after `done` (or when the client goes away).

        Args:
            request: for noticing a client that disconnected.

        Yields:
            SSE messages and keep-alive comments.

        """
        snapshot = await self._call(self.store.snapshot, self.experiment_id)
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
        quiet_since = time.monotonic()
        while not await request.is_disconnected():
            try:
                events = await self._call(self.store.wait_events, self.experiment_id, cursor, WAIT_S, BATCH)
            except StoreError as error:
                yield f": the store is unavailable ({error}); retrying\n\n".encode()
                await anyio.sleep(STORE_RETRY_S)
                continue
            for seq, data in events:
                cursor = seq
                event = event_from_dict(data)
                if isinstance(event, ExperimentEnded):
                    final = await self._final_record()
                    payload = DoneEvent.of(final or record, event)
                    yield message("done", payload.model_dump_json(), self.store.event_id(seq))
                    return
                converted = public_event(event)
                if converted is not None:
                    yield message(converted[0], converted[1], self.store.event_id(seq))
            if events:
                quiet_since = time.monotonic()
                continue
            # a record can end with no terminal event after the cursor: the client resumed after `done`,
            # or the record was rebuilt from a results directory
            try:
                latest = await self._call(self.store.get, self.experiment_id)
            except StoreError:
                continue
            if latest is None or (latest.terminal and cursor >= latest.last_event_seq):
                yield message("done", DoneEvent.of(latest or record).model_dump_json())
                return
            if time.monotonic() - quiet_since >= KEEP_ALIVE_S:
                quiet_since = time.monotonic()
                yield b": keep-alive\n\n"
