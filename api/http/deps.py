"""The API's dependencies (settings, store, launcher, auth), declared once and overridden in tests.

They are coroutines: FastAPI would run a plain function in its request threads. A store call in one of them
goes to `in_store_thread`, never onto the event loop: a paused Redis would otherwise stall every request,
static files and /health included, for as long as a socket timeout.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import weakref
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from evoprune.api.http._response_cache import ResponseCache
from evoprune.api.settings import Settings
from evoprune.coordinator.service.launcher import Launcher
from evoprune.coordinator.service.records import restore_lost_records
from evoprune.shared.store import ExperimentRecord, Store, valid_experiment_id

T = TypeVar("T")
log = logging.getLogger(__name__)
# store calls from coroutines wait in their own threads, so a stalled store cannot take the request threads
# that plain routes (and anything else FastAPI hands to a thread) need
STORE_THREADS = 64
_store_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


async def in_store_thread(call: Callable[..., T], *args: Any) -> T:
    """Run a blocking store call off the event loop, in the store's own threads.

    Args:
        call: the store method (or a function of store calls).
        *args: its arguments.

    Returns:
        What it returned.

    """
    loop = asyncio.get_running_loop()
    if loop not in _store_limiters:
        _store_limiters[loop] = anyio.CapacityLimiter(STORE_THREADS)
    return await anyio.to_thread.run_sync(call, *args, limiter=_store_limiters[loop], abandon_on_cancel=True)


UNAUTHORIZED_DETAIL = "missing or invalid bearer token (send `Authorization: Bearer <EVOPRUNE_API_TOKEN>`)"
_bearer = HTTPBearer(auto_error=False, description="EVOPRUNE_API_TOKEN, when the server sets one")


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


async def get_store(request: Request) -> Store:
    """The app's open store."""
    return request.app.state.store


async def get_launcher(request: Request) -> Launcher:
    """What starts the app's experiments (Ray runners)."""
    return request.app.state.launcher


async def get_responses(request: Request) -> ResponseCache:
    """The app's cache of serialised experiment responses."""
    return request.app.state.responses


SettingsDep = Annotated[Settings, Depends(get_settings)]
ResponsesDep = Annotated[ResponseCache, Depends(get_responses)]
StoreDep = Annotated[Store, Depends(get_store)]
LauncherDep = Annotated[Launcher, Depends(get_launcher)]


async def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Let the request through when the API is open or it carries the right bearer token.

    Args:
        settings: holds the token, if any.
        credentials: the request's `Authorization: Bearer` credentials.

    Raises:
        HTTPException: 401 without the right token.

    """
    token = settings.token
    if token is None:
        return
    # compare_digest takes as long whatever the first wrong character, so timing tells nothing
    if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=UNAUTHORIZED_DETAIL,
            headers={"WWW-Authenticate": "Bearer"},
        )


Authorized = Depends(require_token)
# what every protected route may answer besides its own statuses
PROTECTED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong bearer token (when the server sets EVOPRUNE_API_TOKEN)"},
    503: {"description": "the store (Redis) cannot be reached"},
}


async def get_record(experiment_id: str, store: StoreDep, settings: SettingsDep) -> ExperimentRecord:
    """The record of the experiment in the path.

    Args:
        experiment_id: from the path.
        store: the store.
        settings: where the results directories are.

    Returns:
        The record.

    Raises:
        HTTPException: 404 for an unknown id.

    """

    def read() -> ExperimentRecord | None:
        record = store.get(experiment_id)
        # a finished experiment the store lost (Redis restarted empty) is rebuilt from its results directory
        if (
            record is None
            and valid_experiment_id(experiment_id)
            and restore_lost_records(store, settings.store_spec(), only=experiment_id)
        ):
            record = store.get(experiment_id)
        return record

    record = await in_store_thread(read)
    if record is None:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"no experiment {experiment_id!r}")
    return record


RecordDep = Annotated[ExperimentRecord, Depends(get_record)]


def results_unreachable(record: ExperimentRecord, error: OSError) -> HTTPException:
    """The answer when an experiment's results cannot be read now: object storage out of reach, a disk error.

    Args:
        record: the experiment.
        error: what reading raised; logged, not told (it names the server's endpoint or paths).

    Returns:
        A 503 to raise.

    """
    log.error("cannot read the results of experiment %s: %s", record.id, error)
    return HTTPException(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        detail=f"the results of experiment {record.id} cannot be read now (their storage did not answer); "
        "try again later",
    )
