"""/health (readiness) reports the store and Ray each on its own; /health/live asks neither (issue 23).

The Ray cluster's own loss and return (a head restart under a running server) is tested on real processes
in tests/deploy/test_head_restart.py; here the checks' verdicts are pinned with a real Redis and a Ray
address that nothing listens on.
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from evoprune.api.http.app import create_app
from evoprune.api.http.routes.health import RAY_ANSWER_S, STORE_ANSWER_S, gcs_listens
from evoprune.api.settings import Settings
from evoprune.coordinator.service.launcher import RayLauncher
from evoprune.shared.store_factory import open_store
from tests.api.conftest import RecordingLauncher, redis_url
from tests.api.servers import free_port

pytestmark = pytest.mark.redis
# the bounds of both checks, plus a busy 2-core machine
ANSWER_WITHIN_S = STORE_ANSWER_S + RAY_ANSWER_S + 10


def _settings(tmp_path, **values) -> Settings:
    return Settings(data_dir=tmp_path / "data", redis_url=values.pop("redis_url", redis_url()), **values)


def _client(settings: Settings, launcher=None) -> TestClient:
    store = open_store(settings.store_spec())
    return TestClient(create_app(settings=settings, store=store, launcher=launcher or RecordingLauncher()))


def test_ray_that_does_not_listen_makes_the_service_unready_while_the_store_is_fine(tmp_path):
    # nothing listens on a freshly freed port; joining on start is off, so the probe asks the address itself
    settings = _settings(tmp_path, ray_address=f"127.0.0.1:{free_port()}", connect_ray_on_start=False)
    launcher = RayLauncher(settings.store_spec(), settings.run_settings(), timeout_s=1)
    try:
        with _client(settings, launcher) as client:
            started = time.monotonic()
            answer = client.get("/health")
            assert time.monotonic() - started < ANSWER_WITHIN_S
            assert answer.status_code == 503
            body = answer.json()
            assert body["status"] == "unavailable"
            assert (body["ray"], body["ray_ok"]) == ("cluster", False)
            assert (body["store"], body["store_ok"]) == ("redis", True)
            # liveness does not ask Ray: a restarting head must not get the server killed
            assert client.get("/health/live").status_code == 200
    finally:
        launcher.close()


def test_a_store_that_does_not_answer_is_reported_apart_from_ray(tmp_path):
    settings = _settings(tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with _client(settings) as client:
        answer = client.get("/health")
        assert answer.status_code == 503
        body = answer.json()
        assert (body["store_ok"], body["ray"], body["ray_ok"]) == (False, "none", True)
        live = client.get("/health/live")
        assert live.status_code == 200 and live.json() == {"status": "ok"}


def test_ready_when_the_store_answers_and_experiments_start_without_ray(tmp_path):
    with _client(_settings(tmp_path)) as client:
        body = client.get("/health").json()
        assert body["status"] == "ok" and body["store_ok"] and body["ray_ok"]
        schema = client.get("/openapi.json").json()
        assert {"/health", "/health/live"} <= set(schema["paths"])


def test_the_gcs_probe_reads_every_form_of_ray_address():
    port = free_port()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}", "auto"):
        assert gcs_listens(address, timeout_s=0.5) is False
