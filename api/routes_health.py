"""GET /health: open to everyone (load balancers, compose health checks); says whether the store answers."""

from __future__ import annotations

import functools
from importlib import metadata

from fastapi import APIRouter, Response, status

from evoprune.api.deps import SettingsDep, StoreDep
from evoprune.api.schemas import Health
from evoprune.shared.store import StoreError

router = APIRouter(tags=["health"])


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
    try:
        store.ping()
        store_ok = True
    except StoreError:
        store_ok = False
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Health(
        status="ok" if store_ok else "unavailable",
        store=store.kind,
        store_ok=store_ok,
        auth_required=settings.token is not None,
        version=service_version(),
    )
