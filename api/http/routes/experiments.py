"""Routes of the experiment resource: submit, list, read, cancel."""

from __future__ import annotations

import logging
import secrets
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from evoprune.api.http._config_input import ConfigInputError, resolve_config
from evoprune.api.http.deps import (
    PROTECTED_RESPONSES,
    Authorized,
    LauncherDep,
    RecordDep,
    ResponsesDep,
    SettingsDep,
    StoreDep,
)
from evoprune.api.http.schemas import ExperimentCreate, ExperimentCreated, ExperimentList, ExperimentPublic
from evoprune.coordinator.service.launcher import Launcher
from evoprune.coordinator.service.records import (
    end_without_runner,
    lost_record_ids,
    new_record,
    restore_lost_records,
)
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.store import ExperimentRecord, Store, TooManyActiveError

ID_BYTES = 8
MAX_PAGE = 500

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/experiments", tags=["experiments"], dependencies=[Authorized], responses=PROTECTED_RESPONSES
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ExperimentCreated,
    responses={
        400: {"description": "the body cannot be parsed (not UTF-8 JSON)"},
        413: {"description": "the body is over EVOPRUNE_MAX_BODY_BYTES"},
        422: {"description": "the config is invalid or over the server's limits; each item names the field"},
        429: {"description": "too many experiments are queued or running"},
        503: {"description": "the store or the Ray cluster is unavailable"},
    },
)
def create_experiment(
    body: ExperimentCreate,
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    launcher: LauncherDep,
) -> ExperimentCreated:
    """Submit an experiment: its config as a mapping (`config`) or as YAML text (`config_yaml`).

    The experiment is queued at once and runs on the Ray cluster; follow it with
    `GET /experiments/{id}/events`.
    """
    try:
        config = resolve_config(body, settings)
    except ConfigInputError as error:
        raise HTTPException(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=error.detail) from None
    experiment_id = secrets.token_hex(ID_BYTES)
    record = new_record(experiment_id, config, settings.store_spec().results_root, name=body.name)
    try:
        # counted and created in one step: concurrent submissions cannot all slip under the cap
        store.create(record, max_active=settings.max_active_experiments)
    except TooManyActiveError as error:
        raise HTTPException(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"{error.active} experiments are queued or running, the most this server allows "
            f"(EVOPRUNE_MAX_ACTIVE_EXPERIMENTS={settings.max_active_experiments}); try again later",
        ) from None
    _launch(store, launcher, record)
    response.headers["Location"] = f"/experiments/{experiment_id}"
    return ExperimentCreated(id=experiment_id)


def _launch(store: Store, launcher: Launcher, record: ExperimentRecord) -> None:
    try:
        launcher.launch(record)
    except Exception as error:  # whatever Ray raised, the experiment is marked failed
        log.exception("experiment %s could not be started", record.id)
        message = f"the experiment could not be started on Ray: {type(error).__name__}: {error}"
        end_without_runner(store, record, message)
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=message) from None


@router.get("", response_model=ExperimentList)
def list_experiments(
    store: StoreDep,
    settings: SettingsDep,
    status_filter: Annotated[
        ExperimentStatus | None,
        Query(alias="status", description="only experiments with this status"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ExperimentList:
    """Experiments, newest first."""
    every = store.records()
    # after Redis restarted empty, finished experiments come back from their results directories here,
    # not only when each id is fetched
    lost = lost_record_ids({record.id for record in every}, settings.store_spec())
    if lost:
        for experiment_id in lost:
            restore_lost_records(store, settings.store_spec(), only=experiment_id)
        every = store.records()
    records = [r for r in every if status_filter is None or r.status == status_filter]
    page = records[offset : offset + limit]
    return ExperimentList(experiments=[ExperimentPublic.of(r) for r in page], total=len(records))


@router.get(
    "/{experiment_id}", response_model=ExperimentPublic, responses={404: {"description": "unknown id"}}
)
async def get_experiment(record: RecordDep, responses: ResponsesDep) -> Response:
    """An experiment's status, progress per run and hypervolume."""
    return responses.json(record, "experiment", lambda: ExperimentPublic.of(record).model_dump_json())


@router.delete(
    "/{experiment_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExperimentPublic,
    responses={404: {"description": "unknown id"}, 409: {"description": "the experiment has already ended"}},
)
def cancel_experiment(record: RecordDep, store: StoreDep, launcher: LauncherDep) -> ExperimentPublic:
    """Cancel an experiment: it stops at its next step, keeps its results so far and ends `cancelled`."""
    if record.terminal:
        raise HTTPException(
            status_code=status.HTTP_409_CONFLICT,
            detail=f"experiment {record.id} has already ended ({record.status}); there is nothing to cancel",
        )
    store.request_cancel(record.id)
    try:
        alive = launcher.alive(record.id)
    except Exception:  # Ray unreachable: the flag is raised, the runner will see it
        alive = True
    if not alive:
        current = store.get(record.id)
        if current is not None and not current.terminal:
            record = end_without_runner(store, current)
    return ExperimentPublic.of(record)
