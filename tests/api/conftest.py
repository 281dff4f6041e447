"""API test fixtures: stores (local files, a real Redis), apps with a recording launcher, a Ray for jobs."""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from evoprune.api.http.app import create_app
from evoprune.api.settings import Settings
from evoprune.coordinator.service.actors import RAY_NAMESPACE
from evoprune.coordinator.service.jobs import JobKind, JobSpec
from evoprune.coordinator.service.jobs_analysis import ANALYSIS
from evoprune.coordinator.service.jobs_export import EXPORT
from evoprune.coordinator.service.launcher import Launcher
from evoprune.shared.store import ExperimentRecord
from evoprune.shared.store_local import LocalStore

TOKEN = "s3cr3t-token-for-tests-0123456789"

# sklearn digits through the pixels backbone with a 32-unit head: seconds per evaluation on 2 cores
TINY_CONFIG = {
    "name": "tiny",
    "dataset": {"source": "sklearn:digits"},
    "ood": [{"source": "sklearn:sample_images"}],
    "backbone": {"name": "pixels", "weights": None},
    "head": {"layers": [32]},
    "training": {"max_epochs": 3},
    "search": {"population_size": 6, "max_evaluations": 12, "runs": 2, "seed": 0},
}


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class RecordingLauncher(Launcher):
    """Launches nothing: records which experiments would have started (our collaborator, not Ray)."""

    def __init__(self) -> None:
        self.launched: list[str] = []
        self.running: set[str] = set()
        self.jobs: dict[str, list[JobSpec]] = {ANALYSIS.noun: [], EXPORT.noun: []}
        self.living: dict[str, set[str]] = {ANALYSIS.noun: set(), EXPORT.noun: set()}
        # the same list and set, by the names the tests read
        self.analyses = self.jobs[ANALYSIS.noun]
        self.analysing = self.living[ANALYSIS.noun]
        self.exports = self.jobs[EXPORT.noun]
        self.exporting = self.living[EXPORT.noun]

    def launch(self, record: ExperimentRecord) -> None:
        self.launched.append(record.id)
        self.running.add(record.id)

    def alive(self, experiment_id: str) -> bool:
        return experiment_id in self.running

    def launch_job(self, spec: JobSpec) -> None:
        self.jobs[spec.job_kind.noun].append(spec)
        self.living[spec.job_kind.noun].add(spec.experiment_id)

    def job_alive(self, kind: JobKind[Any, Any], experiment_id: str) -> bool:
        return experiment_id in self.living[kind.noun]


@dataclass(frozen=True)
class RayJobExperiment:
    """A succeeded experiment with real results, and a client of an app whose launcher is the real Ray one."""

    client: TestClient
    id: str
    results_dir: Path
    base: str  # its URL path

    def actor_exists(self, kind: JobKind[Any, Any]) -> bool:
        """Whether the experiment's job actor of that kind is still registered with Ray."""
        import ray

        try:
            ray.get_actor(kind.actor_name(self.id), namespace=RAY_NAMESPACE)
        except ValueError:
            return False
        return True


@pytest.fixture(scope="module")
def job_ray():
    """A local Ray that offers the results node's resources, where the job actors are placed."""
    import ray

    from evoprune.coordinator.placement import results_node_resources

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, resources=results_node_resources(), include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.fixture
def ray_job_experiment(tmp_path_factory, tmp_path, job_ray):
    from tests.coordinator.analysis.fixtures import session_results

    source, _, _ = session_results(tmp_path_factory.getbasetemp())
    settings = Settings(data_dir=tmp_path / "data", recover_on_start=False)
    store = LocalStore(settings.data_dir)
    experiment_id = secrets.token_hex(8)
    results_dir = settings.data_dir / "results" / experiment_id
    shutil.copytree(source, results_dir)
    store.create(
        ExperimentRecord(
            id=experiment_id, name="tiny", config={}, results_dir=str(results_dir), status="succeeded"
        )
    )
    # the real launcher: runners and jobs as detached actors on the Ray this process joined
    with TestClient(create_app(settings, store)) as client:
        yield RayJobExperiment(client, experiment_id, results_dir, f"/experiments/{experiment_id}")


@pytest.fixture
def local_store(tmp_path):
    return LocalStore(tmp_path / "data")


@pytest.fixture
def redis_store():
    from evoprune.shared.store_redis import RedisStore

    store = RedisStore(redis_url(), prefix=f"evoprune-test-{uuid.uuid4().hex}")
    try:
        yield store
    finally:
        store.delete_all()
        store.close()


def make_client(tmp_path, store, launcher=None, **settings) -> TestClient:
    launcher = launcher or RecordingLauncher()
    app = create_app(
        Settings(data_dir=tmp_path / "data", recover_on_start=False, **settings), store, launcher
    )
    return TestClient(app)


@pytest.fixture(params=["local", pytest.param("redis", marks=pytest.mark.redis)])
def any_store(request, tmp_path):
    if request.param == "local":
        yield LocalStore(tmp_path / "data")
        return
    yield request.getfixturevalue("redis_store")


@pytest.fixture
def client(tmp_path, any_store):
    with make_client(tmp_path, any_store) as client:
        yield client
