"""GET /health (readiness: the store and Ray each answer) and GET /health/live (liveness: the process serves).

Both are open to everyone: load balancers, compose health checks and Kubernetes probes call them. Readiness
may be slow to say yes, never slow to say no: every check has its own bound. Liveness does no I/O at all, so
a slow Redis or a restarting Ray head never gets the server killed; Ray's own node is watched by the
deployment instead (deploy/ray_node_guard.py, the Kubernetes pod's liveness probe).
"""

from __future__ import annotations

import functools
import socket
from importlib import metadata

import anyio
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel

from evoprune.api.http.deps import SettingsDep, StoreDep, in_store_thread
from evoprune.api.http.schemas import Health
from evoprune.api.settings import Settings
from evoprune.coordinator.service.launcher import RayLauncher
from evoprune.shared.store import StoreError

router = APIRouter(tags=["health"])
# a store that has not answered by then counts as down: a health check must answer faster than its prober
# gives up, and a paused Redis would otherwise hold it for the client's socket timeout and retries
STORE_ANSWER_S = 2.0
# the same for Ray: a driver whose GCS is gone blocks in ray.nodes() for as long as Ray retries (a minute)
RAY_ANSWER_S = 2.0
# One Ray probe at a time: a probe stuck on a vanished GCS holds its thread until Ray gives up; further
# probes then wait on this limiter, time out and report "down" instead of piling up threads.
_RAY_PROBES = 1


class Readiness(Health):
    """Whether the service, its store and its Ray cluster answer: ready for submissions when all do."""

    ray: str
    ray_ok: bool


class Liveness(BaseModel):
    """The process serves requests (nothing behind it is asked)."""

    status: str = "ok"


@functools.cache
def service_version() -> str:
    """The installed evoprune version (looked up once: the metadata scan is slow)."""
    try:
        return metadata.version("evoprune")
    except metadata.PackageNotFoundError:
        return "unknown"


def _host_and_port(address: str) -> tuple[str, int] | None:
    """The GCS host and port of a RAY_ADDRESS (`host:port` or `ray://host:port`); None for `auto` and co."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def gcs_listens(address: str, timeout_s: float) -> bool:
    """Whether the GCS at a Ray address accepts connections (before the driver has joined the cluster).

    A plain TCP connection: Ray's own GCS client blocks for 40 s and logs at length on a dead address.

    Args:
        address: RAY_ADDRESS.
        timeout_s: how long to wait for the connection.

    Returns:
        True when something listens there.

    """
    endpoint = _host_and_port(address)
    if endpoint is None:
        return False
    try:
        with socket.create_connection(endpoint, timeout=timeout_s):
            return True
    except OSError:
        return False


def own_node_alive() -> bool:
    """Whether the cluster this driver joined still counts the driver's own node as alive.

    False when the GCS does not answer, and also when it answers but has forgotten this node: a head that
    restarted without fault tolerance knows none of the old nodes, so a driver left over from before can no
    longer start anything, though the address answers again.
    """
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    return any(node["NodeID"] == node_id and node["Alive"] for node in ray.nodes())


def ray_usable(launcher: RayLauncher, address: str | None, join: bool) -> bool:
    """Whether Ray can take a submission now (blocking; run in a thread).

    Args:
        launcher: the service's Ray launcher.
        address: the configured RAY_ADDRESS (None: a local Ray the service starts itself).
        join: the service joins Ray on its own (on start): a readiness probe then joins it too, so that a
            head that was down when the server started is joined as soon as it answers, with no submission
            needed to trigger it (a pod that is not ready gets none).

    Returns:
        True when the driver's own node is alive in the cluster (or, before joining, the cluster answers).

    """
    import ray

    if not ray.is_initialized():
        if join:
            launcher.connect()
        elif address:
            return gcs_listens(address, RAY_ANSWER_S)
        else:
            return True  # a local Ray the service starts at the first submission
    return own_node_alive()


async def ray_readiness(request: Request, settings: Settings) -> tuple[str, bool]:
    """What the Ray check reports: (which Ray, whether it is usable), within RAY_ANSWER_S.

    Args:
        request: gives the app's launcher.
        settings: the address and whether the service joins Ray on start.

    Returns:
        `cluster` (RAY_ADDRESS), `local` or `none` (no Ray launcher), and whether it is usable.

    """
    launcher = getattr(request.app.state, "launcher", None)
    if not isinstance(launcher, RayLauncher):
        return "none", True  # experiments are started some other way (tests' fake launchers)
    state = request.app.state
    if not hasattr(state, "ray_probes"):
        state.ray_probes = anyio.CapacityLimiter(_RAY_PROBES)
    address = settings.ray_address
    ok = False
    with anyio.move_on_after(RAY_ANSWER_S):
        try:
            ok = await anyio.to_thread.run_sync(
                ray_usable, launcher, address, settings.connect_ray_on_start,
                limiter=state.ray_probes, abandon_on_cancel=True,
            )  # fmt: skip
        except Exception:  # a Ray call that fails rather than hangs: as unusable as a silent one
            ok = False
    return ("cluster" if address else "local"), ok


@router.get(
    "/health",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "the store or Ray does not answer"}},
)
async def health(store: StoreDep, settings: SettingsDep, request: Request, response: Response) -> Readiness:
    """Readiness: whether the store and Ray answer, each reported on its own (no token needed)."""
    store_ok = False
    with anyio.move_on_after(STORE_ANSWER_S):
        try:
            await in_store_thread(store.ping)
            store_ok = True
        except StoreError:
            store_ok = False
    ray_where, ray_ok = await ray_readiness(request, settings)
    ready = store_ok and ray_ok
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(
        status="ok" if ready else "unavailable",
        store=store.kind,
        store_ok=store_ok,
        ray=ray_where,
        ray_ok=ray_ok,
        auth_required=settings.token is not None,
        version=service_version(),
    )


@router.get("/health/live", response_model=Liveness)
async def live() -> Liveness:
    """Liveness: the process answers HTTP. No store or Ray call, so a slow dependency cannot fail it."""
    return Liveness()
