"""deploy/healthcheck.py, the containers' HEALTHCHECK: one public HTTP endpoint per role, healthy on a 2xx."""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import pytest

from tests.deploy.tools import ROOT, private_ray_head


def _load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("evoprune_healthcheck", ROOT / "deploy" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load_healthcheck()
RAY_START_TIMEOUT_S = 120


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/health" else 503
        body = b'{"status": "ok"}' if status == 200 else b'{"status": "unavailable"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_2xx_answer_is_healthy(server):
    assert healthcheck.main(["http", f"{server}/health"]) == 0


def test_a_503_answer_is_unhealthy_and_says_so(server, capsys):
    assert healthcheck.main(["http", f"{server}/down"]) == 1
    assert "answered 503" in capsys.readouterr().err


def test_no_answer_is_unhealthy(capsys):
    assert healthcheck.main(["http", f"http://127.0.0.1:{_closed_port()}/health"]) == 1
    assert "did not answer" in capsys.readouterr().err


def test_each_role_has_its_own_endpoint_and_the_api_is_the_default():
    assert healthcheck.role_url(None) == healthcheck.role_url("api") == "http://127.0.0.1:8000/health"
    assert healthcheck.role_url("ray-head").endswith(":8265/api/gcs_healthz")
    assert healthcheck.role_url("ray-worker").endswith(":52365/api/local_raylet_healthz")


def test_the_role_comes_from_the_environment(server, monkeypatch):
    monkeypatch.setitem(healthcheck.ROLE_URLS, "ray-worker", f"{server}/health")
    monkeypatch.setitem(healthcheck.ROLE_URLS, "ray-head", f"{server}/down")
    monkeypatch.setenv("EVOPRUNE_ROLE", "ray-worker")
    assert healthcheck.main(["role"]) == 0
    monkeypatch.setenv("EVOPRUNE_ROLE", "ray-head")
    assert healthcheck.main(["role"]) == 1
    assert healthcheck.main(["role", "--role", "ray-worker"]) == 0


def test_an_unknown_role_is_unhealthy_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("EVOPRUNE_ROLE", "ray-wroker")
    assert healthcheck.main(["role"]) == 1
    assert "unknown EVOPRUNE_ROLE 'ray-wroker'" in capsys.readouterr().err


@pytest.mark.ray
@pytest.mark.slow
def test_the_ray_endpoints_answer_for_a_live_node_and_not_for_a_stopped_one():
    with private_ray_head({}, "--num-cpus=0") as ports:
        head_url = healthcheck.role_url("ray-head").replace(":8265/", f":{ports['dashboard']}/")
        node_url = healthcheck.role_url("ray-worker").replace(":52365/", f":{ports['agent']}/")
        deadline = time.monotonic() + RAY_START_TIMEOUT_S
        while healthcheck.main(["http", head_url]) or healthcheck.main(["http", node_url]):
            assert time.monotonic() < deadline, "the Ray head never became healthy"
            time.sleep(2)
    assert healthcheck.main(["http", head_url]) == 1
    assert healthcheck.main(["http", node_url]) == 1
