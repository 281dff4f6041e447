"""A Ray address that never answers: requests end within a bound and leave `failed` records (issue 13)."""

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from evoprune.coordinator.service.records import new_record
from evoprune.shared.config import parse_config
from evoprune.shared.store_local import LocalStore
from tests.api.conftest import TINY_CONFIG
from tests.api.servers import ApiServer, free_port

pytestmark = pytest.mark.ray
RAY_TIMEOUT_S = 3
# generous: the bound is RAY_TIMEOUT_S; the rest is a busy 2-core machine
ANSWER_WITHIN_S = 30


@pytest.fixture
def silent_ray_address():
    # 127.0.0.2 is loopback that Ray does not rewrite to the node's address; the socket listens (the
    # kernel completes connections) but never accepts or answers, like a cluster behind a dead link
    listener = socket.socket()
    listener.bind(("127.0.0.2", free_port()))
    listener.listen(64)
    try:
        yield "{}:{}".format(*listener.getsockname())
    finally:
        listener.close()


def request(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    call = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(call, timeout=ANSWER_WITHIN_S * 2) as answer:
            status, payload = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, payload = error.code, error.read()
    return status, json.loads(payload), time.monotonic() - started


def test_a_silent_ray_answers_503_within_seconds_and_leaves_failed_records(tmp_path, silent_ray_address):
    data = tmp_path / "data"
    server = ApiServer(
        {
            "RAY_ADDRESS": silent_ray_address,
            "REDIS_URL": "",
            "EVOPRUNE_DATA_DIR": str(data),
            "EVOPRUNE_RAY_TIMEOUT_S": str(RAY_TIMEOUT_S),
            "EVOPRUNE_MAX_ACTIVE_EXPERIMENTS": "2",
        },
        tmp_path / "server.log",
    )
    server.start()
    try:
        for _ in range(3):  # more than the active cap: failed records do not count against it
            status, body, seconds = request("POST", server.url + "/experiments", {"config": TINY_CONFIG})
            assert status == 503, body
            assert seconds < ANSWER_WITHIN_S
            assert "did not answer" in body["detail"]
        status, listing, _ = request("GET", server.url + "/experiments")
        assert status == 200
        assert [item["status"] for item in listing["experiments"]] == ["failed"] * 3

        # a queued record (its runner launched before Ray went silent): cancelling it is bounded too
        queued = new_record("00000000000000aa", parse_config(TINY_CONFIG), Path(data))
        LocalStore(data).create(queued)
        status, body, seconds = request("DELETE", f"{server.url}/experiments/{queued.id}")
        assert status == 202, body
        assert seconds < ANSWER_WITHIN_S
        # readiness says so, as bounded as the rest; liveness does not ask Ray
        status, health, seconds = request("GET", server.url + "/health")
        assert status == 503 and seconds < ANSWER_WITHIN_S
        assert (health["ray_ok"], health["store_ok"]) == (False, True)
        assert request("GET", server.url + "/health/live")[0] == 200
    finally:
        server.kill()
