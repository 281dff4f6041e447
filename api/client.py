"""A small client of the evoprune HTTP API for scripts (standard library only)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypedDict, cast

TIMEOUT_S = 30.0
# the server sends a keep-alive at least every 15 s; a longer silence means the connection is dead
STREAM_TIMEOUT_S = 60.0
RECONNECT_PAUSE_S = 1.0
MAX_RECONNECTS = 30

# The server's JSON responses as the client returns them: the pydantic models of api/http/schemas.py,
# written out here so that the client stays standard-library only (tests/api/test_client_types.py holds each
# field list equal to its model's). Times are ISO 8601 strings, as JSON carries them.


class RunView(TypedDict):
    """One run of an experiment (RunPublic)."""

    run: int
    seed: int
    evaluations_done: int
    evaluations_total: int
    hypervolume: float
    cache_hits: int
    finished: bool


class ExperimentView(TypedDict):
    """An experiment's status and progress (ExperimentPublic)."""

    id: str
    name: str
    status: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    evaluations_done: int
    evaluations_total: int
    cache_hits: int
    hypervolume: float
    runs: list[RunView]
    mask_length: int | None
    error: str | None
    results_dir: str
    config: dict[str, Any]  # the validated config, as JSON


class FrontPointView(TypedDict):
    """One member of a front (FrontPoint)."""

    run: int
    mask: str
    accuracy: float
    active_fraction: float
    auroc: float


class FrontSummaryView(TypedDict):
    """One run's front in brief (FrontSummary)."""

    run: int
    hypervolume: float
    evaluations: int
    size: int


class HypervolumePointView(TypedDict):
    """A point of a run's hypervolume history (HypervolumePoint)."""

    run: int
    evaluations: int
    hypervolume: float


class FrontView(TypedDict):
    """The current fronts of one kind and the hypervolume history (FrontPublic)."""

    experiment_id: str
    kind: str
    evaluations_done: int
    hypervolume: float
    points: list[FrontPointView]
    runs: list[FrontSummaryView]
    hypervolume_history: list[HypervolumePointView]


class EvaluationView(TypedDict):
    """One evaluated mask (EvaluationPublic)."""

    run: int
    step: int
    mask: str
    mask_length: int | None
    accuracy: float
    active_fraction: float
    auroc: float
    cached: bool
    seconds: float
    worker: str
    test_accuracy: float | None
    test_auroc: float | None


class EvaluationPage(TypedDict):
    """A page of evaluations (EvaluationList)."""

    evaluations: list[EvaluationView]
    total: int
    offset: int
    limit: int


class AnalysisView(TypedDict):
    """The state of an experiment's analysis (AnalysisPublic)."""

    status: str
    error: str | None
    stage: str | None
    requested_at: str | None
    started_at: str | None
    finished_at: str | None
    top: int | None
    samples: int | None


class ArtifactView(TypedDict):
    """One result or analysis file (ArtifactPublic)."""

    name: str
    kind: str
    source: str
    media_type: str
    description: str
    size_bytes: int
    url: str


class ArtifactListing(TypedDict):
    """The analysis state and every file of an experiment (ArtifactList)."""

    experiment_id: str
    analysis: AnalysisView
    artifacts: list[ArtifactView]



class ApiError(RuntimeError):
    """The server answered with an error; `status` is the HTTP status and `detail` its explanation."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"HTTP {status}: {format_detail(detail)}")


def format_detail(detail: Any) -> str:
    """A FastAPI error detail as readable text: one line per field problem."""
    if isinstance(detail, list):
        return "\n".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        )
    return str(detail)


@dataclass(frozen=True)
class ServerEvent:
    """One Server-Sent Event."""

    event: str
    data: Any
    id: str | None


class Client:
    """Talks to one evoprune server.

    Args:
        url: the server's base URL, e.g. http://127.0.0.1:8000.
        token: the API token, when the server requires one.
        timeout_s: per request (not for event streams).

    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(_SameOriginRedirects)

    def _request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> urllib.request.Request:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            # unredirected: urllib copies ordinary headers onto a redirect to any host; the redirect handler
            # below puts the token back only for the same origin
            request.add_unredirected_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        return request

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            with self._opener.open(self._request(method, path, body), timeout=self.timeout_s) as answer:
                return json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, _detail(error)) from None

    def submit(
        self, config: dict[str, Any] | None = None, config_yaml: str | None = None, name: str | None = None
    ) -> str:
        """Submit an experiment.

        Args:
            config: the config as a mapping, or
            config_yaml: the config as YAML text.
            name: a display name.

        Returns:
            The new experiment's id.

        Raises:
            ApiError: invalid config (422, one problem per field), no token (401), ...

        """
        body: dict[str, Any] = {"config": config} if config is not None else {"config_yaml": config_yaml}
        if name:
            body["name"] = name
        return str(self._call("POST", "/experiments", body)["id"])

    def experiment(self, experiment_id: str) -> ExperimentView:
        """The experiment's status and progress (ExperimentPublic)."""
        return cast(ExperimentView, self._call("GET", f"/experiments/{_quote(experiment_id)}"))

    def experiments(self) -> list[ExperimentView]:
        """The newest experiments."""
        return cast(list[ExperimentView], self._call("GET", "/experiments")["experiments"])

    def front(self, experiment_id: str, kind: str = "population") -> FrontView:
        """The current fronts of one kind, "population" (the paper's) or "archive", and the HV history."""
        path = f"/experiments/{_quote(experiment_id)}/front?kind={_quote(kind)}"
        return cast(FrontView, self._call("GET", path))

    def evaluations(self, experiment_id: str, offset: int = 0, limit: int = 1000) -> EvaluationPage:
        """A page of evaluations (EvaluationList)."""
        query = urllib.parse.urlencode({"offset": offset, "limit": limit})
        path = f"/experiments/{_quote(experiment_id)}/evaluations?{query}"
        return cast(EvaluationPage, self._call("GET", path))

    def cancel(self, experiment_id: str) -> ExperimentView:
        """Ask the experiment to stop."""
        return cast(ExperimentView, self._call("DELETE", f"/experiments/{_quote(experiment_id)}"))

    def delete(self, experiment_id: str) -> None:
        """Remove an ended experiment for good: its record and its results directory on the server.

        Raises:
            ApiError: 409 while it is queued or running (cancel it first) or being analysed or exported;
                404 for an unknown id.

        """
        self._call("DELETE", f"/experiments/{_quote(experiment_id)}?purge=true")

    def analyse(
        self, experiment_id: str, top: int | None = None, samples: int | None = None
    ) -> AnalysisView:
        """Start the analysis of a succeeded experiment on the server's Ray (AnalysisPublic)."""
        body = {name: value for name, value in (("top", top), ("samples", samples)) if value is not None}
        return cast(AnalysisView, self._call("POST", f"/experiments/{_quote(experiment_id)}/analysis", body))

    def artifacts(self, experiment_id: str) -> ArtifactListing:
        """The analysis status and every result and analysis file of the experiment (ArtifactList)."""
        return cast(ArtifactListing, self._call("GET", f"/experiments/{_quote(experiment_id)}/artifacts"))

    def artifact(self, experiment_id: str, name: str) -> bytes:
        """One artifact's bytes (a PNG, a Parquet table, a JSON index...)."""
        path = f"/experiments/{_quote(experiment_id)}/artifacts/{_quote(name)}"
        try:
            with self._opener.open(self._request("GET", path), timeout=self.timeout_s) as answer:
                return bytes(answer.read())
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, _detail(error)) from None

    def events(self, experiment_id: str) -> Iterator[ServerEvent]:
        """Follow the experiment's events until `done`, reconnecting (with Last-Event-ID) when cut off.

        Args:
            experiment_id: the experiment.

        Yields:
            The events: `snapshot` first, then the live ones, `done` last.

        """
        last_id: str | None = None
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = last_id
            request = self._request("GET", f"/experiments/{_quote(experiment_id)}/events", headers=headers)
            try:
                with self._opener.open(request, timeout=STREAM_TIMEOUT_S) as stream:
                    failures = 0
                    for event in parse_events(stream):
                        if event.id is not None:
                            last_id = event.id
                        yield event
                        if event.event == "done":
                            return
            except urllib.error.HTTPError as error:
                raise ApiError(error.code, _detail(error)) from None
            except (OSError, TimeoutError):
                failures += 1
                if failures > MAX_RECONNECTS:
                    raise
            time.sleep(RECONNECT_PAUSE_S)


def parse_events(lines: Iterator[bytes] | Any) -> Iterator[ServerEvent]:
    """Parse a text/event-stream.

    Args:
        lines: the stream's raw lines (a file-like object works).

    Yields:
        One ServerEvent per message; comments are skipped.

    """
    event, event_id = "message", None
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                text = "\n".join(data)
                try:
                    payload: Any = json.loads(text)
                except ValueError:
                    payload = text
                yield ServerEvent(event=event, data=payload, id=event_id)
            event, data, event_id = "message", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            event_id = value


def _quote(text: str) -> str:
    return urllib.parse.quote(text, safe="")


def _detail(error: urllib.error.HTTPError) -> Any:
    try:
        return json.loads(error.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        return error.reason


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects, carrying the bearer token only to the origin it was meant for."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        token = req.unredirected_hdrs.get("Authorization")
        if new is not None and token is not None and _origin(newurl) == _origin(req.full_url):
            new.add_unredirected_header("Authorization", token)
        return new
