"""API test fixtures: stores (local files, a real Redis), apps with a recording launcher, tiny configs."""

from __future__ import annotations

import os
import uuid

import pytest
from fastapi.testclient import TestClient

from evoprune.api.app import create_app
from evoprune.api.settings import Settings
from evoprune.coordinator.service.analysis_launch import AnalysisSpec
from evoprune.coordinator.service.export_launch import ExportSpec
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
        self.analyses: list[AnalysisSpec] = []
        self.analysing: set[str] = set()
        self.exports: list[ExportSpec] = []
        self.exporting: set[str] = set()

    def launch(self, record: ExperimentRecord) -> None:
        self.launched.append(record.id)
        self.running.add(record.id)

    def alive(self, experiment_id: str) -> bool:
        return experiment_id in self.running

    def launch_analysis(self, spec: AnalysisSpec) -> None:
        self.analyses.append(spec)
        self.analysing.add(spec.experiment_id)

    def analysis_alive(self, experiment_id: str) -> bool:
        return experiment_id in self.analysing

    def launch_export(self, spec: ExportSpec) -> None:
        self.exports.append(spec)
        self.exporting.add(spec.experiment_id)

    def export_alive(self, experiment_id: str) -> bool:
        return experiment_id in self.exporting


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
