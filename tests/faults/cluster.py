"""The fault matrix's real parts: a Ray head and worker, a private Redis, `evoprune serve`; signals to each.

Every process started here carries the environment marker FAULTS_MARKER with this cluster's own value, so a
signal or the teardown reaches this cluster's processes (a node's raylet, its actors) and nobody else's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyarrow.parquet as pq
import redis

from evoprune.api.client import ApiError, Client, ServerEvent
from evoprune.coordinator.placement import results_node_resources
from evoprune.coordinator.results.layout import ResultsLayout
from tests.api.servers import REPO, PrivateRedis, free_port
from tests.faults.worker import PACE_ENV

TOKEN = "fault-matrix-token-0123456789abcdefXYZ"
FAULTS_MARKER = "EVOPRUNE_FAULTS_CLUSTER"
VENV_BIN = Path(sys.executable).parent
# how long Ray processes wait for a vanished head before they give up (Ray's default is 60 s)
HEAD_LOSS_TIMEOUT_S = 10
START_TIMEOUT_S = 120.0
HTTP_TIMEOUT_S = 10.0
STREAM_DEADLINE_S = 240.0
# the smallest experiment that has a checkpoint before its first step and many after: 2 runs of 8 masks,
# then steps of 2 offspring until 24 evaluations a run (9 rounds of worker calls); the fake problem's
# 64 inputs are the digits' 8x8 pixels
CONFIG: dict[str, Any] = {
    "name": "faults",
    "dataset": {"source": "sklearn:digits"},
    "ood": [{"source": "sklearn:sample_images"}],
    "backbone": {"name": "pixels", "weights": None},
    "head": {"layers": [16]},
    "training": {"max_epochs": 3},
    "search": {"population_size": 8, "max_evaluations": 24, "offspring_per_step": 2, "runs": 2, "seed": 5},
}
TOTAL_EVALUATIONS = 48
TERMINAL = ("succeeded", "failed", "cancelled")


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, pause_s: float = 0.2) -> Any:
    """Poll `condition` until it returns something true; fail the test (never hang) past `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(pause_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _marked(marker: str) -> Iterator[psutil.Process]:
    for process in psutil.process_iter(["pid", "cmdline"]):
        with contextlib.suppress(psutil.Error):
            if process.environ().get(FAULTS_MARKER) == marker:
                yield process


class Node:
    """One `ray start --block` process (a head, or a worker node joining one) and the processes it starts."""

    def __init__(self, marker: str, head_port: int, head: bool, cpus: int, extra_env: dict[str, str]) -> None:
        self.marker = marker
        self.head_port = head_port
        self.head = head
        self.cpus = cpus
        self.extra_env = extra_env
        self.process: subprocess.Popen[bytes] | None = None
        # unix socket paths are limited to ~107 characters: keep the temp dir short
        self.temp_dir = tempfile.mkdtemp(prefix="evf-", dir="/tmp")
        self.log_path = Path(self.temp_dir) / "ray-start.log"

    def start(self) -> None:
        where = (
            [
                "--head", f"--port={self.head_port}", "--include-dashboard=false",
                f"--temp-dir={self.temp_dir}",
                # the head is also the node that holds the results: runners go there
                f"--resources={json.dumps(results_node_resources())}",
            ]
            if self.head
            else [f"--address=127.0.0.1:{self.head_port}"]
        )  # fmt: skip
        self.log_path.write_bytes(b"")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "ray"), "start", "--block", f"--num-cpus={self.cpus}",
                 "--disable-usage-stats", *where],
                env={**os.environ, **self.extra_env, FAULTS_MARKER: self.marker},
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(self._started, START_TIMEOUT_S, f"ray start ({self.marker})", pause_s=0.3)

    def _started(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log_path.read_text()[-3000:]
        # printed once the node's raylet has registered with the head
        return b"Ray runtime started" in self.log_path.read_bytes()

    def send(self, signum: int) -> None:
        """SIGTERM: `ray start --block` stops its node's processes; SIGKILL: the whole node dies at once."""
        assert self.process is not None
        if signum == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            for process in _marked(self.marker):
                with contextlib.suppress(psutil.Error):
                    process.kill()
        else:
            self.process.send_signal(signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process is not None:
            self.send(signal.SIGKILL)
            self.process = None

    def actors(self, class_name: str) -> list[psutil.Process]:
        """This node's worker processes that hold an actor of the class (Ray titles them `ray::Class...`)."""
        found = []
        for process in _marked(self.marker):
            with contextlib.suppress(psutil.Error):
                command = process.info["cmdline"] or []
                if command and command[0].startswith(f"ray::{class_name}"):
                    found.append(process)
        return found


class Server:
    """`evoprune serve` in a process of its own, signalled and started again at will."""

    def __init__(self, marker: str, environment: dict[str, str], log_path: Path) -> None:
        self.marker = marker
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.environment = environment
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.client = Client(self.url, TOKEN, timeout_s=HTTP_TIMEOUT_S)

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(VENV_BIN / "evoprune"), "serve", "--port", str(self.port), "--log-level", "warning"],
                cwd=REPO,
                env={**os.environ, **self.environment, FAULTS_MARKER: self.marker},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._live, START_TIMEOUT_S, "evoprune serve to answer /health/live", pause_s=0.3)

    def _live(self) -> bool:
        assert self.process is not None and self.process.poll() is None, self.log_tail()
        try:
            with urllib.request.urlopen(self.url + "/health/live", timeout=1) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def send(self, signum: int, exit_within_s: float) -> float:
        """Signal the server and wait (bounded) for it to exit; returns how long that took."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signum)
        try:
            self.process.wait(timeout=exit_within_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
            raise AssertionError(
                f"evoprune serve did not exit within {exit_within_s} s of signal {signum}\n{self.log_tail()}"
            ) from None
        finally:
            self.process = None
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def record(self, experiment_id: str) -> dict[str, Any] | None:
        """The experiment's record, or None while the server (or its store) does not answer."""
        try:
            return self.client.experiment(experiment_id)
        except (ApiError, OSError):
            return None

    def log_tail(self, characters: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-characters:]


class Follower:
    """Follows an experiment's SSE stream on a thread with the API's own client (Last-Event-ID resumes)."""

    def __init__(self, client: Client, experiment_id: str) -> None:
        self.events: list[ServerEvent] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._follow, args=(client, experiment_id), daemon=True)
        self._thread.start()

    def _follow(self, client: Client, experiment_id: str) -> None:
        try:
            for event in client.events(experiment_id):
                self.events.append(event)
        except BaseException as error:  # kept for the test to report
            self.error = error

    def finish(self, timeout_s: float = STREAM_DEADLINE_S) -> list[ServerEvent]:
        """The events up to `done`; fails when the stream has not ended within the bound."""
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"the event stream did not end within {timeout_s} s"
        assert self.error is None, f"the follower failed: {self.error!r}"
        return self.events


@dataclass
class Cluster:
    """A Ray head (which holds the results) and a worker node, a private Redis and the API on them."""

    root: Path
    marker: str = field(default_factory=lambda: f"faults-{os.getpid()}-{time.monotonic_ns()}")
    redis: PrivateRedis = field(default_factory=PrivateRedis)

    def __post_init__(self) -> None:
        port = free_port()
        ray_env = {
            "RAY_AUTH_MODE": "disabled",
            "RAY_gcs_rpc_server_reconnect_timeout_s": str(HEAD_LOSS_TIMEOUT_S),
            # the workers import the test's actor class from the repository
            "PYTHONPATH": str(REPO),
            PACE_ENV: "0.3",
            # keep an idle worker process warm (the feature-extraction task's, with TensorFlow imported), so
            # each experiment's extraction does not pay for a new process: Ray's default keeps one per CPU
            "RAY_num_workers_soft_limit": "4",
            "EVOPRUNE_CACHE_DIR": str(self.root / "feature-cache"),
        }
        self.ray_env = ray_env
        self.head = Node(self.marker, port, head=True, cpus=1, extra_env=ray_env)
        self.worker = Node(self.marker + "-worker", port, head=False, cpus=1, extra_env=ray_env)
        self.data_dir = self.root / "data"
        self.server = Server(
            self.marker + "-api",
            {
                **ray_env,
                "RAY_ADDRESS": f"127.0.0.1:{port}",
                "REDIS_URL": self.redis.url,
                "EVOPRUNE_DATA_DIR": str(self.data_dir),
                "EVOPRUNE_API_TOKEN": TOKEN,
                "EVOPRUNE_WORKER_ACTOR": "tests.faults.worker:PacedWorkerActor",
                "EVOPRUNE_RAY_TIMEOUT_S": "20",
            },
            self.root / "api.log",
        )

    def start(self) -> None:
        self.redis.start()
        self.start_ray()
        self.server.start()
        wait_for(self.ready, START_TIMEOUT_S, "/health to report Ray and Redis ready", pause_s=0.5)

    def start_ray(self) -> None:
        self.head.start()
        self.worker.start()

    def ready(self) -> bool:
        try:
            health = self.server.client._call("GET", "/health")
        except (ApiError, OSError):
            return False
        return bool(health.get("ray_ok") and health.get("store_ok"))

    def stop(self) -> None:
        for part in (self.server, self.worker, self.head):
            with contextlib.suppress(Exception):
                part.stop()
        self.redis.stop()
        for node in (self.head, self.worker):
            shutil.rmtree(node.temp_dir, ignore_errors=True)

    def forget_fitness(self) -> None:
        """Empty the shared fitness cache, so each experiment trains what an uninterrupted one trains."""
        client = redis.Redis.from_url(self.redis.url, socket_timeout=5)
        try:
            keys = list(client.scan_iter("evoprune:fitness:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def submit(self) -> str:
        self.forget_fitness()
        return self.server.client.submit(CONFIG)

    def results_dir(self, experiment_id: str) -> Path:
        return self.data_dir / "results" / experiment_id

    def journal_rows(self, experiment_id: str) -> int:
        journal = ResultsLayout(self.results_dir(experiment_id)).journal
        try:
            return journal.read_bytes().count(b"\n")
        except OSError:
            return 0

    def wait_end(self, experiment_id: str, timeout_s: float) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            record = self.server.record(experiment_id)
            return record if record is not None and record["status"] in TERMINAL else None

        return wait_for(ended, timeout_s, f"experiment {experiment_id} to end", pause_s=0.5)


def comparable_rows(results_dir: Path) -> list[tuple[Any, ...]]:
    """evaluations.parquet without the columns that depend on timing (seconds, worker)."""
    table = pq.read_table(results_dir / "evaluations.parquet")
    columns = ["run", "step", "mask", "accuracy", "active_fraction", "auroc", "cached"]
    return list(zip(*(table.column(name).to_pylist() for name in columns), strict=True))


def ledger_lines(results_dir: Path) -> list[str]:
    """The keys of the masks the experiment trained itself, one per line as written (duplicates kept)."""
    path = ResultsLayout(results_dir).ledger
    return [json.loads(line)["key"] for line in path.read_text().splitlines() if line.strip()]
