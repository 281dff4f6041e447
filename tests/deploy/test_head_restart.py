"""The compose api service outlives a Ray head restart without a person (issue 23, point 3).

The api service's own command (`ray start --address=...` then the server under deploy/ray_node_guard.py,
resolved by `docker-compose config`) runs natively against the compose Redis command and a Ray head of this
test's (one CPU, so the experiment has somewhere to evaluate). A loop here plays Docker's
`restart: unless-stopped`: when the command exits, the "container" ends (its leftover processes are killed)
and the command starts again. The head is stopped and started again on the same address, as a restarted
head container is. Readiness (/health) must turn 503 with `ray_ok: false` while the head is away, the api's
command must exit by itself (Ray's node is gone), and once the head is back /health must be ready again and
a new experiment must run to `succeeded`, with nothing done by hand.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.deploy.test_compose_native import TINY_EXPERIMENT, NativeStack
from tests.deploy.tools import TEST_TOKEN, resolved_compose

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.slow]

# Ray's wait for a vanished head before its node and the server give up (RAY_HEAD_LOSS_TIMEOUT_S in the
# compose file; 60 s there): shorter here, so the test spends its time on the restart, not on waiting
HEAD_LOSS_TIMEOUT_S = 15
HEAD_START_TIMEOUT_S = 120.0
READY_TIMEOUT_S = 240.0
UNREADY_TIMEOUT_S = 30.0
# the head's loss timeout, then the guard's three checks five seconds apart, then the server's shutdown
API_EXIT_TIMEOUT_S = HEAD_LOSS_TIMEOUT_S + 3 * 5 + 60.0
EXPERIMENT_TIMEOUT_S = 480.0
# Docker waits 100 ms before the first restart and doubles it; a flat pause keeps a busy machine calm
RESTART_PAUSE_S = 2.0
HTTP_TIMEOUT_S = 10.0


class RestartingService:
    """Plays Docker's `restart: unless-stopped` for one native compose service."""

    def __init__(self, stack: NativeStack, service: str) -> None:
        self.stack = stack
        self.service = service
        self.exits: list[int] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"restart-{service}", daemon=True)

    def start(self) -> None:
        self.stack.start(self.service)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            process = self.stack.processes[self.service]
            if process.poll() is None:
                continue
            self.exits.append(process.returncode)
            self._end_container(process)
            # each run's log is kept, as `docker compose logs` keeps a restarted container's
            log = self.stack.root / f"{self.service}.log"
            if log.exists():
                log.rename(log.with_suffix(f".{len(self.exits)}.log"))
            if not self._stopping.wait(RESTART_PAUSE_S):
                self.stack.start(self.service)

    def _end_container(self, process: subprocess.Popen[bytes]) -> None:
        """What a container's exit does to the rest of its processes (its Ray node's daemons): end them."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        keep = {p.pid for p in self.stack.processes.values() if p is not process}
        marker = str(self.stack.ray_tmpdir)
        for candidate in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if candidate.pid not in keep and candidate.environ().get("RAY_TMPDIR") == marker:
                    candidate.kill()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)


class Head:
    """`ray start --head --block` on a fixed port, own temp folder; stopped killed and started again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.temp_dir = Path(tempfile.mkdtemp(prefix="eph-", dir="/tmp"))  # socket paths must stay short
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        env.update(RAY_TMPDIR=str(self.temp_dir), RAY_AUTH_MODE="disabled")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "ray"), "start", "--head", f"--port={self.port}",
             "--num-cpus=1", "--include-dashboard=false", f"--temp-dir={self.temp_dir}",
             "--disable-usage-stats", "--block"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        _wait(lambda: self._listens(), HEAD_START_TIMEOUT_S, "the Ray head to listen")

    def _listens(self) -> bool:
        assert self.process is not None and self.process.poll() is None, "ray start --head exited"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def kill(self) -> None:
        """End every process of the head at once, as a crashed or evicted head container ends."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for process in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error):
                if process.environ().get("RAY_TMPDIR") == str(self.temp_dir):
                    process.kill()
        self.process.wait(timeout=30)
        self.process = None


def _wait(condition: Any, timeout_s: float, what: str, pause_s: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause_s)
    pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _get(url: str, token: bool = False) -> tuple[int | None, Any]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {TEST_TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")
    except OSError:
        return None, None  # not listening: a container being restarted


def _post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    request.add_header("Authorization", f"Bearer {TEST_TOKEN}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S * 3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[NativeStack]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server missing: install Redis (Debian: apt-get install redis-server)")
    ray_tmpdir = Path(tempfile.mkdtemp(prefix="epr-", dir="/tmp"))
    compose = resolved_compose({"RAY_HEAD_LOSS_TIMEOUT_S": str(HEAD_LOSS_TIMEOUT_S)})
    native = NativeStack(compose=compose, root=tmp_path, ray_tmpdir=ray_tmpdir)
    try:
        yield native
    finally:
        native.stop()
        shutil.rmtree(ray_tmpdir, ignore_errors=True)


def test_the_api_is_unready_without_its_head_and_takes_submissions_again_after_a_restart(stack):
    assert stack.compose["services"]["api"]["restart"] == "unless-stopped"
    stack.start("redis")
    stack.wait_healthy("redis")
    head = Head(stack.port("ray-head", 6379))
    api = RestartingService(stack, "api")
    url = f"http://127.0.0.1:{stack.port('api', 8000)}"
    try:
        head.start()
        api.start()
        _wait(lambda: _get(f"{url}/health")[0] == 200, READY_TIMEOUT_S, "the api to be ready")
        _, body = _get(f"{url}/health")
        assert (body["ray"], body["ray_ok"], body["store_ok"]) == ("cluster", True, True)

        head.kill()
        stopped = time.monotonic()

        def unready() -> dict[str, Any] | None:
            status, answer = _get(f"{url}/health")
            return answer if status == 503 else None

        answer = _wait(unready, UNREADY_TIMEOUT_S, "/health to turn 503", pause_s=0.5)
        assert (answer["ray_ok"], answer["store_ok"]) == (False, True), answer
        assert _get(f"{url}/health/live")[0] == 200, "liveness must not depend on Ray"
        # the node is gone for good: the command exits, so the container would be restarted
        _wait(lambda: api.exits, API_EXIT_TIMEOUT_S, "the api's command to exit without its Ray node")
        exited_after_s = time.monotonic() - stopped

        head.start()
        _wait(lambda: _get(f"{url}/health")[0] == 200, READY_TIMEOUT_S, "the api to be ready again")
        status, created = _post(f"{url}/experiments", {"config": TINY_EXPERIMENT})
        assert status == 201, created

        def finished() -> dict[str, Any] | None:
            _, record = _get(f"{url}/experiments/{created['id']}", token=True)
            return record if record and record["status"] in ("succeeded", "failed", "cancelled") else None

        record = _wait(finished, EXPERIMENT_TIMEOUT_S, "the new experiment to finish", pause_s=2.0)
        assert record["status"] == "succeeded", f"{record}\n{stack.log_tail('api')}"
        print(f"api exited {exited_after_s:.0f} s after the head stopped; exits {api.exits}")
    finally:
        api.stop()
        head.kill()
        shutil.rmtree(head.temp_dir, ignore_errors=True)
