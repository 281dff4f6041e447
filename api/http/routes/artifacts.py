"""Routes of an experiment's files: start its analysis or an export on Ray, follow them, list and download."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from typing import Annotated, BinaryIO

import anyio
from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi import Path as PathParameter
from fastapi.responses import StreamingResponse

from evoprune.api.allowed_paths import reached_without_links
from evoprune.api.http.deps import (
    PROTECTED_RESPONSES,
    Authorized,
    LauncherDep,
    RecordDep,
    results_unreachable,
)
from evoprune.api.http.schemas import (
    AnalysisCreate,
    AnalysisPublic,
    ArtifactList,
    ArtifactPublic,
    ExportCreate,
    ExportPublic,
)
from evoprune.coordinator.export_ensemble import DEFAULT_COMBINE
from evoprune.coordinator.results.artifacts import (
    CHECKED_KINDS,
    MEDIA_TYPES,
    ListedArtifact,
    check_artifact,
    list_artifacts,
)
from evoprune.coordinator.results.fronts import AGGREGATE_RUN, DEFAULT_KIND
from evoprune.coordinator.service.jobs import JobRefusedError, JobUnavailableError
from evoprune.coordinator.service.jobs_analysis import current_analysis, request_analysis
from evoprune.coordinator.service.jobs_export import (
    ExportInvalidError,
    ExportRequest,
    ExportState,
    current_export,
    request_export,
)
from evoprune.shared.parquet_files import CorruptFileError
from evoprune.shared.storage import ObjectPath, is_object_uri, storage_path
from evoprune.shared.store import ExperimentRecord

CHUNK_BYTES = 1 << 16
MAX_NAME_LENGTH = 200
# shown inline by a browser; the tables are downloads
INLINE_KINDS = frozenset({"image", "json", "yaml"})

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/experiments", tags=["analysis"], dependencies=[Authorized], responses=PROTECTED_RESPONSES
)


def _public(request: Request, record: ExperimentRecord, entry: ListedArtifact) -> ArtifactPublic:
    url = request.url_for("get_artifact", experiment_id=record.id, name=entry["name"]).path
    return ArtifactPublic(
        name=entry["name"],
        kind=entry["kind"],
        source=entry["source"],
        media_type=entry["media_type"],
        description=entry["description"],
        size_bytes=entry["size_bytes"],
        url=url,
    )


@router.get(
    "/{experiment_id}/artifacts", response_model=ArtifactList, responses={404: {"description": "unknown id"}}
)
def get_artifacts(record: RecordDep, launcher: LauncherDep, request: Request) -> ArtifactList:
    """The files of an experiment (its results, its analysis, its exports) and where its analysis stands.

    The list holds the files that exist now: none while the experiment has written nothing, the results
    once it has ended, the analysis files (plots, Parquet tables, analysis.json) once analysed, and each
    exported model with its report (export-NAME.keras, export-NAME.json) once exported. Poll it
    while `analysis.status` is `running`.
    """
    try:
        state = current_analysis(record, launcher)
    except OSError as error:
        raise results_unreachable(record, error) from None
    entries = _listed_files(record)
    return ArtifactList(
        experiment_id=record.id,
        analysis=AnalysisPublic.of(state),
        artifacts=[_public(request, record, entry) for entry in entries],
    )


def _listed_files(record: ExperimentRecord) -> list[ListedArtifact]:
    """The files `list_artifacts` finds that the API may serve; 503 when their storage does not answer."""
    try:
        return _reachable(record, list_artifacts(storage_path(record.results_dir)))
    except OSError as error:
        raise results_unreachable(record, error) from None


def _reachable(record: ExperimentRecord, entries: list[ListedArtifact]) -> list[ListedArtifact]:
    if is_object_uri(record.results_dir):
        return entries  # object stores have no links
    # a folder of the results directory replaced by a link (analysis/, exports/) leads out of it
    return [entry for entry in entries if reached_without_links(entry["path"], record.results_dir)]


async def _chunks(handle: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await anyio.to_thread.run_sync(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


@router.get(
    "/{experiment_id}/artifacts/{name}",
    response_class=StreamingResponse,
    responses={
        404: {"description": "unknown id, or no such file (the message names the available ones)"},
        500: {"description": "the table or JSON file is damaged; the message names it and what to do"},
        200: {
            "description": "the file, with its media type",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA_TYPES.values()
            },
        },
    },
)
def get_artifact(
    record: RecordDep,
    name: Annotated[str, PathParameter(max_length=MAX_NAME_LENGTH, description="a name from the list")],
) -> Response:
    """One file of the experiment, by a name that `GET /experiments/{id}/artifacts` lists."""
    listed = {entry["name"]: entry for entry in _listed_files(record)}
    entry = listed.get(name)
    try:
        content = _open(entry["path"]) if entry is not None else None
    except OSError as error:
        raise results_unreachable(record, error) from None
    if entry is None or content is None:
        available = ", ".join(sorted(listed)) or "none yet"
        raise HTTPException(
            status_code=status.HTTP_404_NOT_FOUND,
            detail=f"experiment {record.id} has no file {name!r}; available: {available}",
        )
    disposition = "inline" if entry["kind"] in INLINE_KINDS else "attachment"
    headers = {
        "Content-Disposition": f'{disposition}; filename="{name}"',
        # a new analysis replaces the files under the same names
        "Cache-Control": "no-cache",
    }
    if entry["kind"] in CHECKED_KINDS:
        # checked before a byte is sent: a damaged file is an error, never a 200
        if not isinstance(content, bytes):
            with content:
                content = content.read()
        try:
            check_artifact(content, name, entry["kind"])
        except CorruptFileError as error:
            raise HTTPException(
                status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
                detail=f"experiment {record.id}: {error}; restore it from a backup or produce it again",
            ) from None
        return Response(content, media_type=entry["media_type"], headers=headers)
    if isinstance(content, bytes):
        return Response(content, media_type=entry["media_type"], headers=headers)
    headers["Content-Length"] = str(os.fstat(content.fileno()).st_size)
    return StreamingResponse(_chunks(content), media_type=entry["media_type"], headers=headers)


def _open(location: str) -> bytes | BinaryIO | None:
    """A listed file's content: an object read whole, or a local file opened; None when it is gone.

    Raises:
        OSError: the object storage did not answer.

    """
    path = storage_path(location)
    try:
        if isinstance(path, ObjectPath):
            # one version of the object, whole: a new analysis may replace it meanwhile
            return path.read_bytes()
        # opened here: a new analysis may replace the folder meanwhile, and an open file stays readable
        return open(path, "rb")  # closed by _chunks, or read at once
    except FileNotFoundError:
        return None
    except OSError:
        if isinstance(path, ObjectPath):
            raise
        return None


@router.post(
    "/{experiment_id}/analysis",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=AnalysisPublic,
    responses={
        400: {"description": "the body cannot be parsed (not UTF-8 JSON)"},
        404: {"description": "unknown id"},
        409: {"description": "the experiment has not succeeded, cannot be analysed, or is being analysed"},
        422: {"description": "top or samples out of bounds; the message names the field"},
        503: {"description": "the store or the Ray cluster is unavailable"},
    },
)
def start_analysis(
    record: RecordDep, launcher: LauncherDep, response: Response, body: AnalysisCreate | None = None
) -> AnalysisPublic:
    """Analyse a succeeded experiment on the Ray cluster, as `evoprune analyze` does.

    Answers at once; follow it with `GET /experiments/{id}/artifacts` (its `analysis.status`). The new
    files replace the previous analysis only once all of them are written.
    """
    options = body or AnalysisCreate()
    try:
        state = request_analysis(record, launcher, top=options.top, samples=options.samples)
    except JobRefusedError as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    except JobUnavailableError as error:
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from None
    except OSError as error:  # the checks read the results: their storage did not answer
        raise results_unreachable(record, error) from None
    response.headers["Location"] = f"/experiments/{record.id}/artifacts"
    return AnalysisPublic.of(state)


def _export_public(request: Request, record: ExperimentRecord, state: ExportState) -> ExportPublic:
    urls = {
        entry["name"]: request.url_for("get_artifact", experiment_id=record.id, name=entry["name"]).path
        for entry in _listed_files(record)
        if entry["source"] == "export"
    }
    return ExportPublic.of(state, urls)


@router.post(
    "/{experiment_id}/exports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExportPublic,
    responses={
        400: {"description": "the body cannot be parsed (not UTF-8 JSON)"},
        404: {"description": "unknown id"},
        409: {"description": "the experiment has not succeeded, or one of its exports is running"},
        422: {
            "description": "bad options, or no such member (run, kind, mask, min_accuracy): the field named"
        },
        503: {"description": "the store or the Ray cluster is unavailable"},
    },
)
def start_export(
    record: RecordDep, launcher: LauncherDep, request: Request, response: Response, body: ExportCreate
) -> ExportPublic:
    """Export a front member, or an ensemble, as a pruned model on the Ray cluster, as `evoprune export` does.

    Answers at once; follow it with `GET /experiments/{id}/exports`. Once it has succeeded, the model
    (`export-NAME.keras`), the TFLite and ONNX files asked for (`export-NAME.tflite`,
    `export-NAME-int8.tflite`, `export-NAME.onnx`) and the report (`export-NAME.json`) are among the
    experiment's artifacts.
    """
    options = ExportRequest(
        mask=body.mask.lower() if body.mask is not None else None,
        rule=body.pick,
        min_accuracy=body.min_accuracy,
        run=AGGREGATE_RUN if body.run is None else body.run,
        kind=body.kind or DEFAULT_KIND,
        formats=tuple(body.formats or ()),
        quantize=body.quantize,
        ensemble=body.ensemble,
        ensemble_masks=None if body.ensemble_masks is None else tuple(m.lower() for m in body.ensemble_masks),
        combine=body.combine or DEFAULT_COMBINE,
    )
    try:
        state = request_export(record, launcher, options)
    except ExportInvalidError as error:
        field = error.field or "body"
        raise HTTPException(
            status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, detail=f"{field}: {error}"
        ) from None
    except JobRefusedError as error:
        raise HTTPException(status_code=status.HTTP_409_CONFLICT, detail=str(error)) from None
    except JobUnavailableError as error:
        raise HTTPException(status_code=status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(error)) from None
    except OSError as error:
        raise results_unreachable(record, error) from None
    response.headers["Location"] = f"/experiments/{record.id}/exports"
    return _export_public(request, record, state)


@router.get(
    "/{experiment_id}/exports", response_model=ExportPublic, responses={404: {"description": "unknown id"}}
)
def get_export(record: RecordDep, launcher: LauncherDep, request: Request) -> ExportPublic:
    """Where the latest export of the experiment stands; poll it while `status` is `running`."""
    return _export_public(request, record, current_export(record, launcher))
