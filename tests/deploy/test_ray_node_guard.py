"""deploy/ray_node_guard.py: the API's command ends when its container's Ray node is gone, and only then."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import ModuleType

import pytest

from tests.deploy.tools import ROOT

GUARD = ROOT / "deploy" / "ray_node_guard.py"
POLL_S = 0.2
ANSWER_WITHIN_S = 30


def _load_guard() -> ModuleType:
    spec = importlib.util.spec_from_file_location("evoprune_ray_node_guard", GUARD)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


guard = _load_guard()


class _Raylet(BaseHTTPRequestHandler):
    alive = True

    def do_GET(self) -> None:
        self.send_response(200 if type(self).alive else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def raylet() -> Iterator[tuple[str, type[_Raylet]]]:
    handler = type("Raylet", (_Raylet,), {"alive": True})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/api/local_raylet_healthz", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_commands_own_exit_status_is_passed_on(raylet):
    url, _ = raylet
    command = [sys.executable, "-c", "import sys, time; time.sleep(0.5); sys.exit(7)"]
    assert guard.guard(command, url, poll_s=POLL_S) == 7


def test_a_gone_raylet_stops_the_command_and_exits_non_zero(raylet, tmp_path, capsys):
    url, handler = raylet
    marker = tmp_path / "stopped"
    # the "server" notes that it got SIGTERM, as uvicorn shuts down on it
    server = (
        "import signal, sys, time, pathlib\n"
        f"note = lambda *a: (pathlib.Path({str(marker)!r}).write_text('x'), sys.exit(0))\n"
        "signal.signal(signal.SIGTERM, note)\n"
        "time.sleep(600)\n"
    )
    threading.Timer(1.0, lambda: setattr(handler, "alive", False)).start()
    started = time.monotonic()
    status = guard.guard([sys.executable, "-c", server], url, poll_s=POLL_S, failures=3)
    assert status == guard.NODE_GONE_STATUS != 0
    assert time.monotonic() - started < ANSWER_WITHIN_S
    assert marker.read_text() == "x", "the server must be stopped, not left running"
    assert "Ray node is gone" in capsys.readouterr().err


def test_a_single_failed_check_is_not_a_death(raylet):
    url, handler = raylet
    # one failure, then healthy again: the command runs to its own end
    threading.Timer(0.3, lambda: setattr(handler, "alive", False)).start()
    threading.Timer(0.5, lambda: setattr(handler, "alive", True)).start()
    command = [sys.executable, "-c", "import time; time.sleep(2)"]
    assert guard.guard(command, url, poll_s=POLL_S, failures=3) == 0


def test_sigterm_reaches_the_command_and_the_guard_follows(raylet):
    url, _ = raylet
    process = subprocess.Popen(
        [sys.executable, str(GUARD), "--raylet-url", url, "--poll-s", "0.2", "--",
         sys.executable, "-c", "import time; time.sleep(600)"],
        start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        # the child died of SIGTERM: Popen reports -15, passed on as the guard's status
        assert process.wait(timeout=ANSWER_WITHIN_S) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_the_command_line_needs_a_command():
    with pytest.raises(SystemExit):
        guard.main(["--raylet-url", "http://127.0.0.1:1/"])
