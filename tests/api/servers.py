"""Real services started privately by tests: a redis-server, a Ray head, the API under uvicorn."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import redis

from evoprune.coordinator.placement import results_node_resources

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition, timeout_s: float, what: str, pause_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause_s)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


class PrivateRedis:
    """A redis-server on a free port with no persistence: a restart loses everything, the worst case."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        wait_for(lambda: _pings(client), 10, "redis-server to start")
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


class RayHead:
    """`ray start --head --block` with its own temp dir, so no other Ray user on the machine finds it."""

    def __init__(self, cpus: int = 3) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # unix socket paths are limited to ~107 characters: keep the temp dir short
        self.temp_dir = tempfile.mkdtemp(prefix="evr-", dir="/tmp")
        self.cpus = cpus
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(VENV_BIN / "ray"), "start", "--head", "--block", f"--port={self.port}",
                f"--num-cpus={self.cpus}", "--include-dashboard=false", f"--temp-dir={self.temp_dir}",
                "--disable-usage-stats",
                # one machine holds everything: this node is also where the runner and analysis actors go
                f"--resources={json.dumps(results_node_resources())}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            # a private test cluster on loopback: no token to hand around between processes
            env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        )  # fmt: skip

        def ready() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_for(ready, 120, "the Ray head to listen", pause_s=0.5)
        time.sleep(2.0)  # the GCS listens a little before the raylet has registered

    def stop(self) -> None:
        if self.process is not None:
            # --block makes `ray start` stop the processes it started when it gets SIGTERM
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class ApiServer:
    """`uvicorn evoprune.api.http.app:app_from_environment` in a subprocess, killed and restarted at will."""

    def __init__(self, environment: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = environment
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "uvicorn", "--factory", "evoprune.api.http.app:app_from_environment",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
            ],
            cwd=REPO,
            env={**os.environ, "RAY_AUTH_MODE": "disabled", **self.environment},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

        def healthy() -> bool:
            try:
                # liveness: readiness (/health) also waits for Ray, which some tests keep away on purpose
                with urllib.request.urlopen(self.url + "/health/live", timeout=1) as answer:
                    return answer.status == 200
            except OSError:
                return False

        wait_for(healthy, 60, "the API to answer /health/live", pause_s=0.3)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None
