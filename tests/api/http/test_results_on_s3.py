"""The service with its results root on object storage (moto's S3 server on loopback): run, serve, purge."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from evoprune.api.http.app import create_app
from evoprune.api.settings import Settings
from evoprune.coordinator.assembly import DEFAULT_BACKEND, Backend
from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.results.artifacts import PNG_SIGNATURE
from evoprune.coordinator.results.layout import results_layout
from evoprune.coordinator.service.jobs import JobKind, JobSpec
from evoprune.coordinator.service.jobs_run import run_job
from evoprune.coordinator.service.launcher import Launcher
from evoprune.coordinator.service.records import restore_lost_records
from evoprune.coordinator.service.runner import RunnerSpec, run_service_experiment
from evoprune.shared.parquet_files import read_verified_parquet
from evoprune.shared.storage import ObjectPath, storage_path
from evoprune.shared.store import ExperimentRecord, Store
from evoprune.shared.store_local import LocalStore
from tests import s3_server
from tests.api.conftest import TINY_CONFIG, redis_url
from tests.coordinator.fakes import FakeProblem, fake_feature_set

pytestmark = pytest.mark.s3
s3_environment = s3_server.s3_environment
bucket = s3_server.bucket
WAIT_S = 60.0
RESULT_NAMES = [
    "config.yaml",
    "summary.json",
    "evaluations.parquet",
    "front.parquet",
    "front.png",
    "hypervolume.png",
]


class ThreadLauncher(Launcher):
    """Runs each experiment's runner on a thread of this process, with the fake problem (no Ray, no TF)."""

    def __init__(self, settings: Settings, store: Store, real: bool = False) -> None:
        self._settings = settings
        self._store = store
        self._real = real  # the real features and evaluator, in this process (what an analysis re-trains)
        self.threads: dict[str, threading.Thread] = {}

    def launch(self, record: ExperimentRecord) -> None:
        run = replace(self._settings.run_settings(), workers=0 if self._real else None)
        spec = RunnerSpec(record.id, self._settings.store_spec(), run)
        backend = DEFAULT_BACKEND
        if not self._real:
            backend = Backend(
                load_features=lambda config, settings: fake_feature_set(64),
                make_evaluator=lambda feature_set, config, settings: InProcessEvaluator(
                    FakeProblem(length=64)
                ),
            )
        thread = threading.Thread(
            target=run_service_experiment, args=(spec, backend, self._store), daemon=True
        )
        self.threads[record.id] = thread
        thread.start()

    def alive(self, experiment_id: str) -> bool:
        thread = self.threads.get(experiment_id)
        return thread is not None and thread.is_alive()

    def launch_job(self, spec: JobSpec) -> None:
        # the real job (the analysis itself), on a thread instead of a Ray actor
        thread = threading.Thread(target=run_job, args=(spec,), daemon=True)
        self.threads[f"{spec.job_kind.noun}-{spec.experiment_id}"] = thread
        thread.start()

    def job_alive(self, kind: JobKind[Any, Any], experiment_id: str) -> bool:
        return self.alive(f"{kind.noun}-{experiment_id}")


def app_client(tmp_path, results_root: str, real: bool = False, store: Store | None = None) -> TestClient:
    settings = Settings(data_dir=tmp_path / "data", results_root=results_root, recover_on_start=False)
    store = store if store is not None else LocalStore(settings.data_dir)
    return TestClient(create_app(settings, store, ThreadLauncher(settings, store, real)))


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def stores(request, tmp_path):
    """Two stores of one kind: the service's, and one that has lost every record (Redis restarted empty)."""
    if request.param == "local":
        yield LocalStore(tmp_path / "data"), LocalStore(tmp_path / "other")
        return
    from evoprune.shared.store_redis import RedisStore

    opened = [RedisStore(redis_url(), prefix=f"evoprune-test-{uuid.uuid4().hex}") for _ in range(2)]
    try:
        yield tuple(opened)
    finally:
        for store in opened:
            store.delete_all()
            store.close()


def wait_ended(client: TestClient, experiment_id: str) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        answer = client.get(f"/experiments/{experiment_id}").json()
        if answer["status"] in ("succeeded", "failed", "cancelled"):
            client.app.state.launcher.threads[experiment_id].join(timeout=WAIT_S)
            return answer
        time.sleep(0.1)
    raise AssertionError(f"experiment {experiment_id} did not end within {WAIT_S} s")


def test_results_go_to_object_storage_are_served_from_it_and_purged(tmp_path, bucket, monkeypatch, stores):
    monkeypatch.chdir(tmp_path)  # a URI taken for a local path would be written under it
    root = f"s3://{bucket}/service/results"
    with app_client(tmp_path, root, store=stores[0]) as client:
        answer = client.post("/experiments", json={"config": TINY_CONFIG})
        assert answer.status_code == 201, answer.text
        experiment_id = answer.json()["id"]
        ended = wait_ended(client, experiment_id)
        assert ended["status"] == "succeeded", ended
        assert ended["results_dir"] == f"{root}/{experiment_id}"
        results = storage_path(ended["results_dir"])
        assert isinstance(results, ObjectPath) and results.is_dir()
        # nothing of the experiment went to the local data folder, nor to one named after the URI
        assert not (tmp_path / "data" / "results").exists() and not (tmp_path / "s3:").exists()

        listed = client.get(f"/experiments/{experiment_id}/artifacts").json()["artifacts"]
        assert [item["name"] for item in listed] == RESULT_NAMES
        for item in listed:
            stored = (results / item["name"]).read_bytes()
            assert item["size_bytes"] == len(stored)
            served = client.get(item["url"])
            assert served.status_code == 200 and served.content == stored, item["name"]
            assert served.headers["content-type"].startswith(item["media_type"])
        assert client.get(f"/experiments/{experiment_id}/artifacts/front.png").content.startswith(
            PNG_SIGNATURE
        )
        summary = client.get(f"/experiments/{experiment_id}/artifacts/summary.json").json()
        assert summary["aggregate"]["evaluations"] == 24

        table = read_verified_parquet(results_layout(ended["results_dir"]).evaluations).to_pylist()
        evaluations = client.get(f"/experiments/{experiment_id}/evaluations").json()
        assert evaluations["total"] == 24 == len(table)
        assert [(row["run"], row["step"], row["mask"]) for row in evaluations["evaluations"]] == [
            (row["run"], row["step"], row["mask"]) for row in table
        ]
        # the population fronts are read from the checkpoint on the store
        population = client.get(f"/experiments/{experiment_id}/front", params={"kind": "population"}).json()
        assert population["kind"] == "population" and population["hypervolume"] > 0
        # the final checkpoint's population fronts are the ones front.parquet holds
        stored_front = read_verified_parquet(results_layout(ended["results_dir"]).front).to_pylist()
        assert sorted((point["run"], point["mask"]) for point in population["points"]) == sorted(
            (row["run"], row["mask"]) for row in stored_front if row["kind"] == "population"
        )
        assert {point["run"] for point in population["points"]} == {-1, 0, 1}

        # a damaged file is refused, never served: the seal and the PNG's CRCs are checked on the store too
        summary_object = results / "summary.json"
        good_summary = summary_object.read_bytes()
        summary_object.write_bytes(good_summary.replace(b'"evaluations": 24', b'"evaluations": 25'))
        refused = client.get(f"/experiments/{experiment_id}/artifacts/summary.json")
        assert refused.status_code == 500 and "summary.json" in refused.json()["detail"]
        summary_object.write_bytes(good_summary)
        png = results / "hypervolume.png"
        data = bytearray(png.read_bytes())
        data[len(data) // 2] ^= 0xFF
        png.write_bytes(bytes(data))
        refused = client.get(f"/experiments/{experiment_id}/artifacts/hypervolume.png")
        assert refused.status_code == 500 and "hypervolume.png" in refused.json()["detail"]

        # a service whose store lost every record gets this one back from the copy on object storage
        with app_client(tmp_path / "other", root, store=stores[1]) as other:
            restored = other.get("/experiments").json()["experiments"]
            assert [entry["id"] for entry in restored] == [experiment_id]
            assert other.get(f"/experiments/{experiment_id}").json()["status"] == "succeeded"

            assert client.delete(f"/experiments/{experiment_id}", params={"purge": "true"}).status_code == 204
            assert not results.exists()
            assert [path.name for path in storage_path(root).iterdir()] == []
            assert client.get(f"/experiments/{experiment_id}").status_code == 404
            # the other service's record stays until it is purged there; nothing brings this one back
            assert (
                restore_lost_records(LocalStore(tmp_path / "third"), client.app.state.settings.store_spec())
                == []
            )


def test_the_results_root_setting(tmp_path, monkeypatch, s3_environment):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVOPRUNE_RESULTS_ROOT", "elsewhere/results")
    assert Settings().results_root == str(tmp_path / "elsewhere" / "results")
    assert Settings().store_spec().results_root == tmp_path / "elsewhere" / "results"
    monkeypatch.setenv("EVOPRUNE_RESULTS_ROOT", "s3://some-bucket/prefix/")
    assert Settings().results_root == "s3://some-bucket/prefix"
    monkeypatch.setenv("EVOPRUNE_RESULTS_ROOT", "s3://")
    with pytest.raises(ValueError, match=r"results_root[\s\S]*names no bucket"):
        Settings()
    monkeypatch.delenv("EVOPRUNE_RESULTS_ROOT")
    assert Settings(data_dir=tmp_path / "d").store_spec().results_root == tmp_path / "d" / "results"


@pytest.mark.slow  # 25-30 s on 2 cores: a real (tiny) experiment, then its analysis
def test_an_analysis_over_http_reads_and_writes_object_storage(tmp_path, bucket, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URI taken for a local path would be written under it
    root = f"s3://{bucket}/results"
    with app_client(tmp_path, root, real=True) as client:
        experiment_id = client.post("/experiments", json={"config": TINY_CONFIG}).json()["id"]
        assert wait_ended(client, experiment_id)["status"] == "succeeded"
        base = f"/experiments/{experiment_id}"
        started = client.post(f"{base}/analysis", json={"top": 3, "samples": 1})
        assert started.status_code == 202, started.text
        client.app.state.launcher.threads[f"analysis-{experiment_id}"].join(timeout=WAIT_S * 5)
        listing = client.get(f"{base}/artifacts").json()
        assert listing["analysis"]["status"] == "succeeded", listing["analysis"]
        results = storage_path(f"{root}/{experiment_id}")
        assert (results / "analysis-status.json").is_file() and (
            results / "analysis" / "analysis.json"
        ).is_file()
        analysed = [item for item in listing["artifacts"] if item["source"] == "analysis"]
        index = json.loads((results / "analysis" / "analysis.json").read_text())
        assert [item["name"] for item in analysed] == [entry["name"] for entry in index["artifacts"]]
        assert listing["analysis"]["top"] == 3 and len(analysed) > 0
        for item in analysed:
            served = client.get(item["url"])
            assert (
                served.status_code == 200
                and served.content == (results / "analysis" / item["name"]).read_bytes()
            )
        # nothing went to a local folder named after the URI
        assert not (tmp_path / "s3:").exists() and not list(tmp_path.rglob("*-status.json"))


def test_results_out_of_reach_answer_503_and_the_list_still_answers(tmp_path, monkeypatch):
    # a real server that refuses our credentials at once: the results storage is out of reach, not the store
    with s3_server.s3_server({"INITIAL_NO_AUTH_ACTION_COUNT": "0"}) as environment:
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        root = "s3://refused/results"
        with app_client(tmp_path, root) as client:
            experiment_id = "0123456789abcdef"
            record = ExperimentRecord(
                id=experiment_id,
                name="x",
                config={},
                results_dir=f"{root}/{experiment_id}",
                status="succeeded",
            )
            client.app.state.store.create(record)
            listed = client.get("/experiments")
            assert listed.status_code == 200 and [e["id"] for e in listed.json()["experiments"]] == [
                experiment_id
            ]
            base = f"/experiments/{experiment_id}"
            for path in (f"{base}/artifacts", f"{base}/artifacts/summary.json", f"{base}/evaluations"):
                answer = client.get(path)
                assert answer.status_code == 503, (path, answer.text)
                detail = answer.json()["detail"]
                assert detail.startswith(f"the results of experiment {experiment_id} cannot be read now"), (
                    detail
                )
                assert "127.0.0.1" not in detail
            answer = client.post(f"{base}/analysis", json={})
            assert answer.status_code == 503 and "cannot be read now" in answer.json()["detail"], answer.text
            assert client.get("/experiments/fedcba9876543210").status_code == 404
