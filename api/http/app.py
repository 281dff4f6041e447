"""The FastAPI application: experiments over HTTP and SSE, the web page, OpenAPI at /docs."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evoprune.api.http._input_text import storable
from evoprune.api.http._openapi_events import with_event_schemas
from evoprune.api.http._request_body import RequestBodyGuard
from evoprune.api.http._response_cache import ResponseCache
from evoprune.api.http.routes import artifacts, experiments, health, results, web
from evoprune.api.http.routes.health import service_version
from evoprune.api.settings import Settings
from evoprune.coordinator.service.launcher import Launcher, RayLauncher
from evoprune.coordinator.service.records import restore_lost_records
from evoprune.coordinator.service.recovery import RunnerWatch, recover
from evoprune.shared.store import Store, StoreError, StoreUnavailableError
from evoprune.shared.store_factory import open_store

log = logging.getLogger(__name__)
T = TypeVar("T")

DESCRIPTION = """\
Multi-objective evolutionary pruning of transfer-learning networks (MO-EvoPruneDeepTL) as a service.

Submit an experiment config with `POST /experiments`, follow it with `GET /experiments/{id}/events`
(Server-Sent Events), read its Pareto fronts and evaluations, cancel it with `DELETE`. When the server sets
`EVOPRUNE_API_TOKEN`, every `/experiments` request needs `Authorization: Bearer <token>`.
"""


class SecurityHeaders:
    """Adds headers that keep browsers from sniffing types or framing any response of the API."""

    HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def _attempt(what: str, step: Callable[[], T]) -> T | None:
    try:
        return step()
    except Exception:  # the server still serves reads; a later launch joins Ray again
        log.exception("could not %s at start-up", what)
        return None


def _start_background(app: FastAPI, settings: Settings) -> None:
    """Join Ray, resume orphaned experiments and then watch their runners, without holding up the start."""
    launcher: Launcher = app.state.launcher
    store: Store = app.state.store
    started = time.time()

    def work() -> None:
        # each step on its own: Redis being down must not keep Ray from being joined, or the reverse
        if isinstance(launcher, RayLauncher) and settings.connect_ray_on_start:
            _attempt("join Ray", launcher.connect)
        restored = _attempt(
            "restore lost records", lambda: restore_lost_records(store, settings.store_spec())
        )
        if restored:
            log.warning("restored %d records the store had lost: %s", len(restored), ", ".join(restored))
        if settings.recover_on_start:
            resumed = _attempt("resume experiments", lambda: recover(store, launcher, created_before=started))
            if resumed:
                log.warning("resumed %d experiments without a runner: %s", len(resumed), ", ".join(resumed))
            # from now on, a runner that Ray gives up on is noticed without waiting for the next start
            RunnerWatch(store, launcher).run(app.state.stop_watch)

    app.state.stop_watch = threading.Event()
    threading.Thread(target=work, name="evoprune-startup", daemon=True).start()


def create_app(
    settings: Settings | None = None, store: Store | None = None, launcher: Launcher | None = None
) -> FastAPI:
    """Build the application.

    Args:
        settings: defaults to the environment's.
        store: defaults to the one the settings select (Redis with REDIS_URL, else local files).
        launcher: defaults to Ray runners on RAY_ADDRESS or a local Ray.

    Returns:
        The app; the store and launcher are opened at start-up and closed at shutdown.

    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        spec = settings.store_spec()
        app.state.settings = settings
        app.state.store = store if store is not None else open_store(spec)
        app.state.launcher = launcher or RayLauncher(
            spec, settings.run_settings(), timeout_s=settings.ray_timeout_s
        )
        _start_background(app, settings)
        try:
            yield
        finally:
            app.state.stop_watch.set()
            if store is None:
                app.state.store.close()
            if launcher is None:
                app.state.launcher.close()

    app = FastAPI(title="evoprune", version=service_version(), description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.responses = ResponseCache()
    # given collaborators serve at once, even where the lifespan is not run (some test transports)
    if store is not None:
        app.state.store = store
    if launcher is not None:
        app.state.launcher = launcher
    app.include_router(experiments.router)
    app.include_router(results.router)
    app.include_router(artifacts.router)
    app.include_router(health.router)
    app.include_router(web.router)
    # the page and its files are served from memory by coroutines: nothing a stalled store holds up
    web.warm()
    app.openapi = with_event_schemas(app)  # type: ignore[method-assign]
    app.add_middleware(
        RequestBodyGuard,
        max_bytes=settings.max_body_bytes,
        timeout_s=settings.body_timeout_s,
        token=settings.token,
    )
    app.add_middleware(SecurityHeaders)
    if settings.trusted_host_list:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_host_list)
    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "Accept"],
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the input: a lone surrogate in it cannot be encoded, and a deeply
        # nested one exhausts the encoder's recursion; either was a 500. Scalars are still echoed.
        errors = [
            {
                key: value
                for key, value in item.items()
                if key != "input" or not isinstance(value, dict | list)
            }
            for item in error.errors()
        ]
        detail = storable(jsonable_encoder(errors))
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(StoreUnavailableError)
    async def store_unavailable(request: Request, error: StoreUnavailableError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"the store is unavailable: {error}; try again shortly"}, status_code=503
        )

    @app.exception_handler(StoreError)
    async def store_error(request: Request, error: StoreError) -> JSONResponse:
        log.error("store error on %s %s: %s", request.method, request.url.path, error)
        return JSONResponse({"detail": f"the store failed: {error}"}, status_code=500)

    return app


def app_from_environment() -> Any:
    """The app for `uvicorn --factory evoprune.api.http.app:app_from_environment`, safe as `evoprune serve`.

    uvicorn calls the factory from its Config's `load`, before it binds or accepts anything: the factory
    finds that Config on the stack and gives it what `evoprune serve` gives its own (the open-bind refusal,
    trusted loopback Host names, the header timeout, the connection cap), so both ways in are equally safe.

    Returns:
        The app.

    Raises:
        SystemExit: status 2 on invalid settings or an open bind without a token.

    """
    from evoprune.api.http.serving_safety import bound_server, serving_settings, settings_or_exit

    settings = settings_or_exit()
    config = _loading_uvicorn_config()
    if config is None:
        log.warning(
            "not loaded by uvicorn: the open-bind refusal, header timeout and connection cap are left to "
            "the server that loaded the app; `evoprune serve` applies them"
        )
        return create_app(settings)
    settings = serving_settings(config.host, settings)
    bound_server(config, settings)
    return create_app(settings)


def _loading_uvicorn_config() -> Any:
    """The uvicorn Config whose `load` is calling the factory, or None under another server."""
    import uvicorn

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, uvicorn.Config):
            return candidate
        frame = frame.f_back
    return None
