import io
import json
import secrets
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from evoprune.api.settings import Settings
from evoprune.coordinator.service.publishing import StorePublisher
from evoprune.coordinator.service.records import restore_lost_records
from evoprune.shared.events import (
    EvaluationFinished,
    ExperimentStatus,
    ExperimentSucceeded,
    FrontChanged,
    RunFinished,
    StatusChanged,
)
from evoprune.shared.store import StoreUnavailableError
from evoprune.shared.store_local import LocalStore
from tests.api.conftest import TINY_CONFIG, TOKEN, RecordingLauncher, make_client, redis_url


def submit(client, config=None, **body):
    return client.post("/experiments", json={"config": config or TINY_CONFIG, **body})


def test_submit_creates_a_queued_experiment_and_launches_it(client):
    answer = submit(client, name="first")
    assert answer.status_code == 201
    experiment_id = answer.json()["id"]
    assert answer.headers["location"] == f"/experiments/{experiment_id}"
    assert client.app.state.launcher.launched == [experiment_id]
    experiment = client.get(f"/experiments/{experiment_id}").json()
    assert experiment["name"] == "first" and experiment["status"] == "queued"
    assert experiment["evaluations_total"] == 24 and [r["evaluations_total"] for r in experiment["runs"]] == [
        12,
        12,
    ]
    assert experiment["results_dir"].endswith(f"results/{experiment_id}")
    assert experiment["config"]["search"]["population_size"] == 6
    listed = client.get("/experiments").json()
    assert listed["total"] == 1 and listed["experiments"][0]["id"] == experiment_id
    assert client.get("/experiments?status=running").json()["total"] == 0


def test_a_submission_keeps_a_copy_of_its_record_beside_its_results(client, tmp_path):
    # a store that loses the record before the runner reads it (Redis restarted empty) gets it back from there
    experiment_id = submit(client).json()["id"]
    results_dir = Path(client.get(f"/experiments/{experiment_id}").json()["results_dir"])
    assert (results_dir / "service-state.json").is_file()
    emptied = LocalStore(tmp_path / "restarted-empty")
    spec = client.app.state.settings.store_spec()
    assert restore_lost_records(emptied, spec, only=experiment_id) == [experiment_id]
    assert emptied.get(experiment_id).status == "queued"


def test_yaml_body_is_accepted(client):
    answer = client.post("/experiments", json={"config_yaml": yaml.safe_dump(TINY_CONFIG)})
    assert answer.status_code == 201
    assert client.get(f"/experiments/{answer.json()['id']}").json()["name"] == "tiny"


@pytest.mark.parametrize(
    ("body", "location", "words"),
    [
        ({"config": {"search": {"runs": 0}}}, ["body", "config", "search", "runs"], "search.runs"),
        ({"config": {"serch": {}}}, ["body", "config", "serch"], "unknown key"),
        ({"config": {"ood": [{"source": "nope"}]}}, ["body", "config", "ood", 0, "source"], "ood.0.source"),
        ({"config_yaml": "search: [1"}, ["body", "config_yaml"], "not valid YAML"),
        ({"config_yaml": "search:\n  runs: -1\n"}, ["body", "config", "search", "runs"], "search.runs"),
        ({"config_yaml": "- a list"}, ["body", "config"], "mapping"),
        ({"config": {}, "config_yaml": ""}, ["body"], "exactly one"),
        ({}, ["body"], "exactly one"),
        ({"config": "text"}, ["body", "config"], "dictionary"),
        ({"config": {}, "colour": 1}, ["body", "colour"], "Extra inputs"),
        ({"config": {"search": {"runs": 21}}}, ["body", "config", "search", "runs"], "EVOPRUNE_MAX_RUNS"),
        (
            {"config": {"search": {"population_size": 2000, "max_evaluations": 2000}}},
            ["body", "config", "search", "population_size"],
            "EVOPRUNE_MAX_POPULATION",
        ),
        (
            {"config": {"search": {"max_evaluations": 10**6}}},
            ["body", "config", "search", "max_evaluations"],
            "EVOPRUNE_MAX_EVALUATIONS",
        ),
        (
            {"config": {"head": {"mode": "neurons", "layers": [2_000_000]}}},
            ["body", "config", "head", "layers"],
            "EVOPRUNE_MAX_MASK_LENGTH",
        ),
        ({"config": {"dataset": {"source": "sklearn:digits"}}}, ["body", "config", "ood"], "AUROC"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(client, body, location, words):
    answer = client.post("/experiments", json=body)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert any(item["loc"] == location and words in item["msg"] for item in detail), detail
    assert client.app.state.launcher.launched == []


def test_malformed_json_and_unknown_ids(client):
    answer = client.post("/experiments", content=b"{not json", headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    for path in ("/experiments/0123456789abcdef", "/experiments/../../etc", "/experiments/x/front"):
        assert client.get(path).status_code == 404, path
    assert client.get("/experiments/0123456789abcdef/evaluations").status_code == 404
    assert client.get("/experiments/0123456789abcdef/events").status_code == 404
    assert client.delete("/experiments/0123456789abcdef").status_code == 404


def test_body_over_the_limit_is_413(client):
    big = {"config": {**TINY_CONFIG, "name": "x" * (1 << 20)}}
    assert client.post("/experiments", json=big).status_code == 413
    chunks = (b"x" * 65536 for _ in range(20))
    answer = client.post("/experiments", content=chunks, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413


def test_too_many_active_experiments_is_429(tmp_path, local_store):
    with make_client(tmp_path, local_store, max_active_experiments=2) as client:
        assert submit(client).status_code == 201
        assert submit(client).status_code == 201
        answer = submit(client)
        assert answer.status_code == 429 and "EVOPRUNE_MAX_ACTIVE_EXPERIMENTS" in answer.json()["detail"]


def test_a_launch_failure_marks_the_experiment_failed(tmp_path, local_store):
    class Broken(RecordingLauncher):
        def launch(self, record):
            raise ConnectionError("no cluster at 10.0.0.1:6379")

    with make_client(tmp_path, local_store, Broken()) as client:
        answer = submit(client)
        assert answer.status_code == 503 and "no cluster" in answer.json()["detail"]
        (experiment,) = client.get("/experiments").json()["experiments"]
        assert experiment["status"] == "failed" and "no cluster" in experiment["error"]


def test_auth(tmp_path, local_store):
    with make_client(tmp_path, local_store, api_token=TOKEN) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health").json()["auth_required"] is True
        for wrong in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {TOKEN}"}):
            assert client.post("/experiments", json={"config": TINY_CONFIG}, headers=wrong).status_code == 401
            assert client.get("/experiments", headers=wrong).status_code == 401
            assert client.delete("/experiments/0123456789abcdef", headers=wrong).status_code == 401
        answer = client.post("/experiments", json={"config": TINY_CONFIG})
        assert answer.headers["www-authenticate"] == "Bearer"
        good = {"Authorization": f"Bearer {TOKEN}"}
        created = client.post("/experiments", json={"config": TINY_CONFIG}, headers=good)
        assert created.status_code == 201
        experiment_id = created.json()["id"]
        for path in ("", "/front", "/evaluations", "/events"):
            assert client.get(f"/experiments/{experiment_id}{path}").status_code == 401, path
        assert client.get(f"/experiments/{experiment_id}", headers=good).status_code == 200
        assert client.delete(f"/experiments/{experiment_id}", headers=good).status_code == 202


@pytest.mark.parametrize(
    "token",
    [
        "",
        "changeme",
        "change-me",
        "<token>",
        "short-token",
        "aaaaaaaaaaaaaaaaaaaa",
        "${EVOPRUNE_API_TOKEN}",
        "changeme-changeme",
        "changeme-changeme-changeme-changeme",
        "a" * 40,
        "0123456789abcdef" * 2,
        "abcd1234" * 5,
        "9f2c41d7e08b3a56c1f4d9e27b80a3c",  # 31 characters
        "your-token-here-0123456789abcdefgh",
        "${EVOPRUNE_API_TOKEN:-0123456789abcdef0123}",
    ],
)
def test_settings_refuse_a_placeholder_token_when_one_is_required(token):
    with pytest.raises(ValueError, match="EVOPRUNE_API_TOKEN"):
        Settings(api_token=token, require_token=True)
    if token:
        with pytest.raises(ValueError, match="EVOPRUNE_API_TOKEN"):
            Settings(api_token=token)


@pytest.mark.parametrize(
    "token", [secrets.token_hex(16), secrets.token_hex(32), secrets.token_urlsafe(32), TOKEN]
)
def test_settings_accept_a_generated_token(token):
    assert Settings(api_token=token, require_token=True).token == token


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("EVOPRUNE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REDIS_URL", "redis://example:6379/2")
    monkeypatch.setenv("EVOPRUNE_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("EVOPRUNE_MAX_RUNS", "3")
    settings = Settings()
    assert settings.token == TOKEN and settings.redis_url == "redis://example:6379/2"
    assert settings.cors_origin_list == ["https://a.example", "https://b.example"] and settings.max_runs == 3
    assert TOKEN not in repr(settings)


def test_cors_is_off_unless_configured(tmp_path, local_store):
    preflight = {"Origin": "https://ui.example", "Access-Control-Request-Method": "POST"}
    with make_client(tmp_path, local_store) as client:
        assert "access-control-allow-origin" not in client.options("/experiments", headers=preflight).headers
    with make_client(tmp_path, local_store, cors_origins="https://ui.example") as client:
        answer = client.options("/experiments", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://ui.example"


def test_cancel(client):
    experiment_id = submit(client).json()["id"]
    answer = client.delete(f"/experiments/{experiment_id}")
    # the (recorded) runner is alive: the flag is raised and the runner will end the experiment
    assert answer.status_code == 202 and answer.json()["status"] == "queued"
    assert client.app.state.store.cancel_requested(experiment_id)
    # a runner that is gone cannot see the flag: the API ends the experiment itself
    client.app.state.launcher.running.clear()
    assert client.delete(f"/experiments/{experiment_id}").json()["status"] == "cancelled"
    assert client.delete(f"/experiments/{experiment_id}").status_code == 409


def run_fake_experiment(store, experiment_id, steps=3, finish=True):
    """Publish what a runner of a 1-run experiment would, through the real publisher."""
    snapshot = store.snapshot(experiment_id)
    publisher = StorePublisher(store, snapshot.record, snapshot.front)
    publisher(StatusChanged(status=ExperimentStatus.RUNNING, started_at=1.0e9, mask_length=8))
    for step in range(steps):
        for slot in range(2):
            accuracy = 0.5 + 0.1 * step + 0.01 * slot
            publisher(EvaluationFinished(0, step, f"{step:x}{slot:x}", (accuracy, 0.5, 0.7), False, 0.1, "w"))
        points = ((0.5 + 0.1 * step, 0.5, 0.7),)
        for run in (0, -1):
            publisher(FrontChanged(run, points, (f"{step:x}0",), 0.1 * (step + 1), 2 * (step + 1)))
    if finish:
        publisher(RunFinished(0, 0.3, 2 * steps, 0))
        publisher(ExperimentSucceeded(0.3, 2 * steps, 0, 1.5, "/somewhere"))
    assert publisher.flush()


def read_stream(client, path, headers=None, after_first=None):
    messages = []
    with client.stream("GET", path, headers=headers or {}) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        current = {}
        for line in answer.iter_lines():
            if not line:
                if current:
                    messages.append(current)
                    if len(messages) == 1 and after_first is not None:
                        after_first()
                current = {}
                continue
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return messages


def test_events_snapshot_then_live_then_done_and_resume(client):
    config = {**TINY_CONFIG, "search": {**TINY_CONFIG["search"], "runs": 1}}
    experiment_id = submit(client, config).json()["id"]
    store = client.app.state.store
    run_fake_experiment(store, experiment_id, steps=3)
    messages = read_stream(client, f"/experiments/{experiment_id}/events")
    # the experiment has ended: the snapshot holds everything and `done` follows at once
    assert [m["event"] for m in messages] == ["snapshot", "done"]
    snapshot = messages[0]["data"]
    assert snapshot["experiment"]["status"] == "succeeded"
    assert snapshot["experiment"]["evaluations_done"] == 6
    assert {p["run"] for p in snapshot["front"]["points"]} == {0, -1}
    history = snapshot["front"]["hypervolume_history"]
    assert [h["evaluations"] for h in history if h["run"] == -1] == [2, 4, 6]
    # each run's curve too, on the same axis (evaluations of all runs): a page opened later draws it whole
    run_curve = [h for h in history if h["run"] == 0]
    assert [h["evaluations"] for h in run_curve] == [2, 4, 6]
    assert [h["hypervolume"] for h in run_curve] == pytest.approx([0.1, 0.2, 0.3])
    assert messages[1]["data"]["status"] == "succeeded"
    # resuming from any id replays exactly what followed it
    everything = read_stream(client, f"/experiments/{experiment_id}/events", {"Last-Event-ID": "0"})
    kinds = [m["event"] for m in everything]
    assert kinds[0] == "status" and kinds[-1] == "done" and kinds.count("evaluation") == 6
    store = client.app.state.store
    assert [store.parse_event_id(m["id"]) for m in everything] == list(range(1, len(everything) + 1))
    evaluation = next(m["data"] for m in everything if m["event"] == "evaluation")
    assert evaluation == {
        "run": 0, "step": 0, "mask": "00", "accuracy": 0.5, "active_fraction": 0.5, "auroc": 0.7,
        "cached": False, "seconds": 0.1, "worker": "w", "evaluations_done": 1, "evaluations_total": 12,
        "fidelity": 1.0,
    }  # fmt: skip
    middle = everything[5]["id"]
    resumed = read_stream(client, f"/experiments/{experiment_id}/events", {"Last-Event-ID": middle})
    assert [m.get("id") for m in resumed] == [m.get("id") for m in everything[6:]]
    assert read_stream(client, f"/experiments/{experiment_id}/events?last_event_id={middle}") == resumed
    bad = client.get(f"/experiments/{experiment_id}/events", headers={"Last-Event-ID": "x-1"})
    assert bad.status_code == 400 and "Last-Event-ID" in bad.json()["detail"]


def test_events_of_a_running_experiment_arrive_live(client):
    config = {**TINY_CONFIG, "search": {**TINY_CONFIG["search"], "runs": 1}}
    experiment_id = submit(client, config).json()["id"]
    store = client.app.state.store
    run_fake_experiment(store, experiment_id, steps=1, finish=False)

    def finish():
        snapshot = store.snapshot(experiment_id)
        publisher = StorePublisher(store, snapshot.record, snapshot.front)
        publisher(EvaluationFinished(0, 5, "ff", (0.9, 0.5, 0.8), True, 0.0, ""))
        publisher(ExperimentSucceeded(0.5, 3, 1, 2.0, "/x"))
        publisher.flush()

    # the rest of the experiment happens once the client holds its snapshot
    messages = read_stream(client, f"/experiments/{experiment_id}/events", after_first=finish)
    assert [m["event"] for m in messages] == ["snapshot", "evaluation", "done"]
    assert messages[0]["data"]["experiment"]["status"] == "running"
    assert (
        store.parse_event_id(messages[0]["id"]) == messages[0]["data"]["experiment"]["evaluations_done"] + 3
    )
    assert messages[1]["data"]["cached"] is True and messages[1]["data"]["evaluations_done"] == 3
    assert messages[2]["data"]["status"] == "succeeded"


def test_front_and_evaluations(client):
    config = {**TINY_CONFIG, "search": {**TINY_CONFIG["search"], "runs": 1}}
    experiment_id = submit(client, config).json()["id"]
    run_fake_experiment(client.app.state.store, experiment_id, steps=3, finish=False)
    front = client.get(f"/experiments/{experiment_id}/front?kind=archive").json()
    assert front["kind"] == "archive"
    assert front["evaluations_done"] == 6 and front["hypervolume"] == pytest.approx(0.3)
    assert front["points"] == [
        {"run": -1, "mask": "20", "accuracy": 0.7, "active_fraction": 0.5, "auroc": 0.7},
        {"run": 0, "mask": "20", "accuracy": 0.7, "active_fraction": 0.5, "auroc": 0.7},
    ]
    assert (
        client.get(f"/experiments/{experiment_id}/front?run=-1&kind=archive").json()["runs"][0]["run"] == -1
    )
    # the default view, the population fronts, is read from the checkpoint: this runner wrote none
    population = client.get(f"/experiments/{experiment_id}/front").json()
    assert (
        population["kind"] == "population" and population["points"] == [] and population["hypervolume"] == 0
    )
    assert client.get(f"/experiments/{experiment_id}/front?kind=best").status_code == 422
    page = client.get(f"/experiments/{experiment_id}/evaluations?offset=2&limit=3").json()
    assert page["total"] == 6 and [e["mask"] for e in page["evaluations"]] == ["10", "11", "20"]
    assert page["evaluations"][0]["mask_length"] == 8
    parquet = client.get(
        f"/experiments/{experiment_id}/evaluations", headers={"Accept": "application/vnd.apache.parquet"}
    )
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.num_rows == 6 and table.column_names[:3] == ["run", "step", "mask"]
    assert client.get(f"/experiments/{experiment_id}/evaluations?format=parquet").content == parquet.content
    assert client.get(f"/experiments/{experiment_id}/evaluations?limit=0").status_code == 422


def test_the_population_front_is_read_from_the_experiments_checkpoint(client):
    from evoprune.coordinator.evaluator_interface import InProcessEvaluator
    from evoprune.coordinator.experiment import Experiment
    from evoprune.shared.config import parse_config
    from tests.coordinator.fakes import FakeProblem

    config = {**TINY_CONFIG, "search": {**TINY_CONFIG["search"], "max_evaluations": 20}}
    experiment_id = submit(client, config).json()["id"]
    record = client.app.state.store.get(experiment_id)
    experiment = Experiment(
        parse_config(config), Path(record.results_dir), "fake", 64, InProcessEvaluator(FakeProblem())
    )
    experiment.start()
    experiment.run()
    written = pq.read_table(Path(record.results_dir) / "front.parquet").to_pylist()
    front = client.get(f"/experiments/{experiment_id}/front").json()
    assert front["kind"] == "population"
    for run in (-1, 0, 1):
        expected = {r["mask"] for r in written if r["run"] == run and r["kind"] == "population"}
        assert expected and {p["mask"] for p in front["points"] if p["run"] == run} == expected
    summary = json.loads((Path(record.results_dir) / "summary.json").read_text())
    assert front["hypervolume"] == pytest.approx(summary["aggregate"]["hypervolume_population"], abs=1e-12)


def test_health_and_docs(client):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["store"] in ("local", "redis") and health["store_ok"] is True
    schema = client.get("/openapi.json").json()
    for path in (
        "/experiments",
        "/experiments/{experiment_id}",
        "/experiments/{experiment_id}/front",
        "/experiments/{experiment_id}/evaluations",
        "/experiments/{experiment_id}/events",
        "/health",
    ):
        assert path in schema["paths"], path
    for name in ("ExperimentCreate", "ExperimentPublic", "FrontPoint", "FrontPublic", "EvaluationPublic"):
        assert name in schema["components"]["schemas"], name
    # the SSE payloads come from the same typed events and are documented like the JSON answers
    payloads = schema["paths"]["/experiments/{experiment_id}/events"]["get"]["responses"]["200"][
        "x-event-payloads"
    ]
    assert set(payloads) == {"snapshot", "status", "evaluation", "front", "run-finished", "done"}
    for reference in payloads.values():
        assert reference["$ref"].rsplit("/", 1)[-1] in schema["components"]["schemas"]
    statuses = schema["components"]["schemas"]["ExperimentStatus"]["enum"]
    assert statuses == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert client.get("/docs").status_code == 200


def test_dependencies_are_overridable(tmp_path, local_store):
    from evoprune.api.http.deps import get_settings, get_store
    from evoprune.shared.store import ExperimentRecord
    from evoprune.shared.store_local import LocalStore

    other = LocalStore(tmp_path / "other")
    other.create(ExperimentRecord(id="00000000000000ee", name="elsewhere", config={}, results_dir=""))
    with make_client(tmp_path, local_store) as client:
        assert client.get("/experiments").json()["total"] == 0
        client.app.dependency_overrides[get_store] = lambda: other
        assert [e["name"] for e in client.get("/experiments").json()["experiments"]] == ["elsewhere"]
        client.app.dependency_overrides[get_settings] = lambda: Settings(api_token=TOKEN)
        assert client.get("/experiments").status_code == 401


def test_posted_sources_expand_only_the_servers_allowed_variables(client, monkeypatch, tmp_path):
    monkeypatch.setenv("EVOPRUNE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SECRET_SOMETHING", "s3cr3t-value")
    allowed = {**TINY_CONFIG, "dataset": {"source": "folder:${EVOPRUNE_DATA}/srsmas"}}
    answer = client.post("/experiments", json={"config": allowed})
    assert answer.status_code == 201, answer.text
    record = client.app.state.store.get(answer.json()["id"])
    assert record.config["dataset"]["source"] == f"folder:{tmp_path / 'data'}/srsmas"

    leaking = {**TINY_CONFIG, "dataset": {"source": "folder:${SECRET_SOMETHING}"}}
    answer = client.post("/experiments", json={"config": leaking})
    assert answer.status_code == 422
    assert "s3cr3t-value" not in answer.text
    assert any(item["loc"] == ["body", "config", "dataset", "source"] for item in answer.json()["detail"])


@pytest.mark.redis
def test_a_vanished_record_does_not_end_the_stream_of_a_running_experiment(tmp_path, redis_store):
    import time

    import redis

    with make_client(tmp_path, redis_store) as client:
        config = {**TINY_CONFIG, "search": {**TINY_CONFIG["search"], "runs": 1}}
        experiment_id = submit(client, config).json()["id"]
        run_fake_experiment(redis_store, experiment_id, steps=1, finish=False)
        snapshot = redis_store.snapshot(experiment_id)

        def vanish_then_finish():
            # Redis lost the record (a restart without persistence) while the runner goes on publishing
            raw = redis.Redis.from_url(redis_url())
            raw.delete(f"{redis_store.prefix}:exp:{experiment_id}")
            raw.close()
            time.sleep(2.5)  # several quiet polls of the record by the stream
            publisher = StorePublisher(redis_store, snapshot.record, snapshot.front)
            publisher(EvaluationFinished(0, 5, "ff", (0.9, 0.5, 0.8), True, 0.0, ""))
            publisher(ExperimentSucceeded(0.5, 3, 1, 2.0, "/x"))
            publisher.flush()

        messages = read_stream(client, f"/experiments/{experiment_id}/events", after_first=vanish_then_finish)
        assert [m["event"] for m in messages] == ["snapshot", "evaluation", "done"]


@pytest.mark.redis
def test_after_redis_restarts_empty_the_list_shows_the_finished_experiments(tmp_path, redis_store):
    from evoprune.coordinator.results.layout import ResultsLayout
    from evoprune.coordinator.service.records import write_record_copy

    with make_client(tmp_path, redis_store) as client:
        experiment_id = submit(client).json()["id"]
        run_fake_experiment(redis_store, experiment_id, steps=2)
        snapshot = redis_store.snapshot(experiment_id)
        # what the runner leaves in the results directory at the end
        write_record_copy(ResultsLayout(Path(snapshot.record.results_dir)), snapshot.record, snapshot.front)
        redis_store.delete_all()  # Redis restarted without persistence
        listing = client.get("/experiments").json()
        assert [item["id"] for item in listing["experiments"]] == [experiment_id]
        assert listing["experiments"][0]["status"] == "succeeded"


class SnapshotFailsOnce(LocalStore):
    """The local store whose first snapshot read fails, as Redis does when it drops between two calls."""

    failed = True  # armed by setting it False

    def snapshot(self, experiment_id):
        if not self.failed:
            self.failed = True
            raise StoreUnavailableError("connection reset (test)")
        return super().snapshot(experiment_id)


def test_a_snapshot_read_that_fails_after_the_headers_is_retried(tmp_path):
    store = SnapshotFailsOnce(tmp_path / "data")
    with make_client(tmp_path, store) as client:
        config = {**TINY_CONFIG, "search": {**TINY_CONFIG["search"], "runs": 1}}
        experiment_id = submit(client, config).json()["id"]
        run_fake_experiment(store, experiment_id, steps=1)
        store.failed = False
        messages = read_stream(client, f"/experiments/{experiment_id}/events")
    assert [m["event"] for m in messages if "event" in m] == ["snapshot", "done"]
    assert any("store is unavailable" in m.get("", "") for m in messages)


# generous: `done` follows within a feed's quiet read (about a second); before the fix only keep-alives came
RESUMED_DONE_WITHIN_S = 30


@pytest.mark.redis
def test_a_resumed_stream_of_an_experiment_restored_from_disk_ends_with_done(tmp_path, redis_store):
    import threading

    from evoprune.coordinator.results.layout import ResultsLayout
    from evoprune.coordinator.service.records import write_record_copy

    with make_client(tmp_path, redis_store) as client:
        experiment_id = submit(client).json()["id"]
        run_fake_experiment(redis_store, experiment_id, steps=2)
        snapshot = redis_store.snapshot(experiment_id)
        write_record_copy(ResultsLayout(Path(snapshot.record.results_dir)), snapshot.record, snapshot.front)
        redis_store.delete_all()  # Redis restarted without persistence: the record comes back, its events not
        middle = redis_store.event_id(snapshot.record.last_event_seq // 2)
        streams: list[list[dict]] = []
        reader = threading.Thread(
            target=lambda: streams.append(
                read_stream(client, f"/experiments/{experiment_id}/events", {"Last-Event-ID": middle})
            ),
            daemon=True,
        )
        reader.start()
        reader.join(RESUMED_DONE_WITHIN_S)
        assert streams, f"the resumed stream did not end within {RESUMED_DONE_WITHIN_S} s"
        events = [message["event"] for message in streams[0] if "event" in message]
        assert events == ["done"]
        done = next(message["data"] for message in streams[0] if message.get("event") == "done")
        assert done["status"] == "succeeded"
