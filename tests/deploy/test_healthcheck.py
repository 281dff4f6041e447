"""deploy/healthcheck.py, the containers' HEALTHCHECK: healthy on a 2xx from the API, unhealthy otherwise."""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import pytest

from tests.deploy.tools import ROOT


def _load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("evoprune_healthcheck", ROOT / "deploy" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _load_healthcheck()


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


def test_the_default_url_is_the_apis_health_endpoint():
    assert healthcheck.DEFAULT_API_URL == "http://127.0.0.1:8000/health"
