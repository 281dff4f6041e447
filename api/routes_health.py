"""GET /health: open to everyone (load balancers, compose health checks); says whether the store answers."""

from __future__ import annotations

import functools
from importlib import metadata

import anyio
from fastapi import APIRouter, Response, status

from evoprune.api.deps import SettingsDep, StoreDep, in_store_thread
from evoprune.api.schemas import Health
from evoprune.shared.store import StoreError

router = APIRouter(tags=["health"])
# a store that has not answered by then counts as down: a health check must answer faster than its prober
# gives up, and a paused Redis would otherwise hold it for the client's socket timeout and retries
STORE_ANSWER_S = 2.0


@functools.cache
def service_version() -> str:
    """The installed evoprune version (looked up once: the metadata scan is slow)."""
    try:
        return metadata.version("evoprune")
    except metadata.PackageNotFoundError:
        return "unknown"


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "store down"}})
async def health(store: StoreDep, settings: SettingsDep, response: Response) -> Health:
    """Whether the service and its store answer (no token needed)."""
    store_ok = False
    with anyio.move_on_after(STORE_ANSWER_S):
        try:
            await in_store_thread(store.ping)
            store_ok = True
        except StoreError:
            store_ok = False
    if not store_ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(
        status="ok" if store_ok else "unavailable",
        store=store.kind,
        store_ok=store_ok,
        auth_required=settings.token is not None,
        version=service_version(),
    )
