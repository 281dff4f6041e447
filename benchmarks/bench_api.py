"""HTTP API load benchmark on loopback: read throughput and latency, and SSE fan-out to 50 clients.

The server runs as `evoprune serve` in a subprocess; this process generates the load with a small
keep-alive HTTP/1.1 client on asyncio (lighter than a general client, so the two share the cores fairly).

    python -m evoprune.benchmarks.bench_api [--seconds 10] [--rate 500] [--clients 50] [--redis URL|private]

`--redis private` starts a redis-server of its own on a free loopback port, so that the Redis connections
counted during the SSE phase are the server's alone. While the SSE clients follow, a prober asks
/health and GET /experiments every 50 ms and reports their statuses and latencies.

Prints what was compared and the numbers; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from evoprune.coordinator.service.publishing import StorePublisher
from evoprune.shared.events import EvaluationFinished, ExperimentSucceeded, FrontChanged
from evoprune.shared.store import ExperimentRecord, RunProgress, Store, StoreSpec
from evoprune.shared.store_factory import open_store

TARGET_RATE = 500.0
TARGET_P99_MS = 50.0
CONNECTIONS = 32
RUNS = 10
FRONT_POINTS = 20
MASK_BITS = 2048  # a ResNet50 feature mask: 512 hex characters per point
SSE_EVENTS = 300
SSE_RATE = 100.0


class HeldLoad(TypedDict):
    """Open-loop load at a fixed rate: what was sent, what failed, the rate achieved and the latencies."""

    requests: int
    errors: int
    achieved_rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float


class Probed(TypedDict):
    """The prober's findings while SSE clients follow: failures, Redis connections, latencies per path."""

    probe_failures: int
    redis_connections_max: int
    health_requests: int
    health_p50_ms: float
    health_p99_ms: float
    experiments_requests: int
    experiments_p50_ms: float
    experiments_p99_ms: float


class FanOut(Probed):
    """SSE fan-out: how many clients got every event and `done`, the delivery delays, and the probes."""

    clients: int
    events: int
    clients_with_every_event: int
    clients_done: int
    delivery_p50_ms: float
    delivery_p99_ms: float


# one store's part of the JSON line ("pass" is a keyword, hence the functional form)
StoreResult = TypedDict("StoreResult", {"ceiling_rps": float, "held": HeldLoad, "sse": FanOut, "pass": bool})


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed_experiment(store: Store, data_dir: Path, finished: bool) -> str:
    """An experiment the size of a real one: RUNS runs, fronts of FRONT_POINTS 2048-bit masks."""
    rng = np.random.default_rng(0)
    experiment_id = secrets.token_hex(8)
    record = ExperimentRecord(
        id=experiment_id,
        name="bench",
        config={"name": "bench"},
        results_dir=str(data_dir / "results" / experiment_id),
        evaluations_total=RUNS * 200,
        runs=[RunProgress(run=run, seed=run, evaluations_total=200) for run in range(RUNS)],
    )
    store.create(record)
    publisher = StorePublisher(store, record, store.snapshot(experiment_id).front)  # type: ignore[union-attr]
    if finished:
        for run in [*range(RUNS), -1]:
            points = tuple(tuple(float(v) for v in rng.random(3)) for _ in range(FRONT_POINTS))
            masks = tuple(rng.bytes(MASK_BITS // 8).hex() for _ in range(FRONT_POINTS))
            publisher(FrontChanged(run, points, masks, float(rng.random()), 200))  # type: ignore[arg-type]
    assert publisher.flush()
    return experiment_id


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def get(self, path: str) -> int:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await self.reader.readexactly(length)
        return status


async def fixed_rate(port: int, paths: list[str], rate: float, seconds: float) -> HeldLoad:
    """Open-loop load: request i is due at i / rate; latency counts from when it was due."""
    connections = [await Connection.open(port) for _ in range(CONNECTIONS)]
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for connection in connections:
        idle.put_nowait(connection)
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    start = time.perf_counter() + 0.1

    async def one(index: int) -> None:
        nonlocal errors
        due = start + index / rate
        connection = await idle.get()
        try:
            status = await connection.get(paths[index % len(paths)])
            errors += status != 200
        finally:
            latencies.append(time.perf_counter() - due)
            idle.put_nowait(connection)

    tasks = []
    for index in range(total):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for connection in connections:
        connection.writer.close()
    milliseconds = np.array(latencies) * 1000
    return {
        "requests": total,
        "errors": errors,
        "achieved_rps": round(total / elapsed, 1),
        "p50_ms": round(float(np.percentile(milliseconds, 50)), 2),
        "p99_ms": round(float(np.percentile(milliseconds, 99)), 2),
        "max_ms": round(float(milliseconds.max()), 2),
    }


async def max_throughput(port: int, paths: list[str], seconds: float) -> float:
    """Closed-loop: CONNECTIONS clients back to back; requests per second."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def client(offset: int) -> None:
        nonlocal done
        connection = await Connection.open(port)
        index = offset
        while time.perf_counter() < deadline:
            await connection.get(paths[index % len(paths)])
            done += 1
            index += 1
        connection.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(offset) for offset in range(CONNECTIONS)))
    return round(done / (time.perf_counter() - started), 1)


async def sse_client(port: int, path: str, received: list[tuple[int, float]]) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # HTTP/1.0: no chunked framing around the events, the server closes the stream at the end
    writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    status, event_id = "", None
    buffer = b""
    while True:
        chunk = await reader.read(65536)
        if not chunk:
            break
        buffer += chunk
        while b"\n\n" in buffer:
            block, buffer = buffer.split(b"\n\n", 1)
            fields = dict(
                line.split(": ", 1)
                for line in block.decode().splitlines()
                if ": " in line and "\r" not in line
            )
            event_id = fields.get("id")
            if fields.get("event") in ("evaluation", "front") and event_id is not None:
                received.append((int(event_id.split("-")[0]), time.perf_counter()))
            if fields.get("event") == "done":
                status = json.loads(fields["data"])["status"]
                writer.close()
                return status
    writer.close()
    return status


async def probe(port: int, stop: asyncio.Event, redis_url: str | None) -> Probed:
    """/health and GET /experiments every 50 ms until `stop`; the most Redis connections seen meanwhile."""
    connection = await Connection.open(port)
    latencies: dict[str, list[float]] = {"/health": [], "/experiments": []}
    failures = 0
    most_connections = 0
    watcher = None
    if redis_url:
        import redis

        watcher = redis.Redis.from_url(redis_url)
    while not stop.is_set():
        for path, seen in latencies.items():
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(connection.get(path), timeout=30)
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                status = 0
                connection.writer.close()
                connection = await Connection.open(port)
            seen.append(time.perf_counter() - started)
            failures += status != 200
        if watcher is not None:
            # the watcher's own connection is one of them
            most_connections = max(most_connections, int(watcher.info("clients")["connected_clients"]) - 1)
        await asyncio.sleep(0.05)
    connection.writer.close()
    if watcher is not None:
        watcher.close()
    health, experiments = (_requests_and_percentiles(latencies[path]) for path in ("/health", "/experiments"))
    return {
        "probe_failures": failures,
        "redis_connections_max": most_connections,
        "health_requests": health[0],
        "health_p50_ms": health[1],
        "health_p99_ms": health[2],
        "experiments_requests": experiments[0],
        "experiments_p50_ms": experiments[1],
        "experiments_p99_ms": experiments[2],
    }


def _requests_and_percentiles(seconds: list[float]) -> tuple[int, float, float]:
    """How many requests, and their p50 and p99 latencies in milliseconds (0 when there were none)."""
    milliseconds = np.array(seconds or [0.0]) * 1000
    return (
        len(seconds),
        round(float(np.percentile(milliseconds, 50)), 1),
        round(float(np.percentile(milliseconds, 99)), 1),
    )


async def sse_fan_out(
    port: int, store: Store, data_dir: Path, clients: int, redis_url: str | None = None
) -> FanOut:
    """`clients` SSE clients follow one experiment while SSE_EVENTS events are published to the store."""
    experiment_id = seed_experiment(store, data_dir, finished=False)
    snapshot = store.snapshot(experiment_id)
    assert snapshot is not None
    publisher = StorePublisher(store, snapshot.record, snapshot.front, interval_s=0.05)
    received: list[list[tuple[int, float]]] = [[] for _ in range(clients)]
    path = f"/experiments/{experiment_id}/events"
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(port, stop, redis_url))
    readers = [asyncio.create_task(sse_client(port, path, received[i])) for i in range(clients)]
    await asyncio.sleep(2.0 + clients / 100)  # every client holds its snapshot
    published_at: dict[int, float] = {}
    publisher.start()
    for index in range(SSE_EVENTS):
        publisher(EvaluationFinished(index % RUNS, index, f"{index:04x}", (0.9, 0.5, 0.8), False, 0.1, "w"))
        published_at[publisher.view.record.last_event_seq] = time.perf_counter()
        await asyncio.sleep(1.0 / SSE_RATE)
    publisher(ExperimentSucceeded(0.5, SSE_EVENTS, 0, 1.0, str(data_dir)))
    publisher.stop(deadline_s=10.0)
    statuses = await asyncio.wait_for(asyncio.gather(*readers), timeout=120)
    stop.set()
    probed = await prober
    expected = sorted(published_at)
    complete = sum(sorted(seq for seq, _ in got) == expected for got in received)
    delays = [arrival - published_at[seq] for got in received for seq, arrival in got if seq in published_at]
    milliseconds = np.array(delays) * 1000 if delays else np.zeros(1)
    return {
        "clients": clients,
        "events": len(expected),
        "clients_with_every_event": complete,
        "clients_done": sum(status == "succeeded" for status in statuses),
        "delivery_p50_ms": round(float(np.percentile(milliseconds, 50)), 1),
        "delivery_p99_ms": round(float(np.percentile(milliseconds, 99)), 1),
        **probed,
    }


def start_server(data_dir: Path, redis_url: str | None, prefix: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    environment = {
        **os.environ,
        "EVOPRUNE_DATA_DIR": str(data_dir),
        "EVOPRUNE_CONNECT_RAY_ON_START": "false",
        "EVOPRUNE_RECOVER_ON_START": "false",
        "EVOPRUNE_REDIS_PREFIX": prefix,
        "REDIS_URL": redis_url or "",
    }
    environment.pop("EVOPRUNE_API_TOKEN", None)
    command = [
        sys.executable, "-m", "evoprune.api.cli", "serve", "--port", str(port), "--log-level", "warning"
    ]  # fmt: skip
    server = subprocess.Popen(command, env=environment)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return server, port
        except OSError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError("the server did not start")


def bench_store(kind: str, redis_url: str | None, args: argparse.Namespace) -> StoreResult:
    prefix = f"evoprune-bench-{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="evoprune-bench-") as folder:
        data_dir = Path(folder)
        store = open_store(StoreSpec(data_dir=str(data_dir), redis_url=redis_url, redis_prefix=prefix))
        server, port = start_server(data_dir, redis_url, prefix)
        try:
            experiment_id = seed_experiment(store, data_dir, finished=True)
            paths = [f"/experiments/{experiment_id}", f"/experiments/{experiment_id}/front"]
            asyncio.run(max_throughput(port, paths, 2.0))  # warm-up
            ceiling = asyncio.run(max_throughput(port, paths, args.seconds))
            held = asyncio.run(fixed_rate(port, paths, args.rate, args.seconds))
            sse = asyncio.run(sse_fan_out(port, store, data_dir, args.clients, redis_url))
        finally:
            server.terminate()
            server.wait(timeout=30)
            if redis_url:
                store.delete_all()  # type: ignore[attr-defined]
            store.close()
    held_ok = (
        held["errors"] == 0 and held["achieved_rps"] >= 0.95 * args.rate and held["p99_ms"] < TARGET_P99_MS
    )
    sse_ok = (
        sse["clients_with_every_event"] == sse["clients"] == sse["clients_done"] and not sse["probe_failures"]
    )
    print(
        f"[{kind}] GET /experiments/{{id}} and /front ({RUNS} runs x {FRONT_POINTS} points of "
        f"{MASK_BITS}-bit masks): closed-loop ceiling {ceiling} req/s with {CONNECTIONS} connections; "
        f"open-loop at {args.rate:.0f} req/s for {args.seconds:.0f} s: {held['achieved_rps']} req/s, "
        f"p50 {held['p50_ms']} ms, p99 {held['p99_ms']} ms (target p99 < {TARGET_P99_MS:.0f} ms) -> "
        f"{'PASS' if held_ok else 'FAIL'}"
    )
    print(
        f"[{kind}] SSE: {sse['clients']} clients x {sse['events']} events at {SSE_RATE:.0f} events/s: "
        f"{sse['clients_with_every_event']} received every event, {sse['clients_done']} got `done`; "
        f"delivery p50 {sse['delivery_p50_ms']} ms, p99 {sse['delivery_p99_ms']} ms; meanwhile /health "
        f"p99 {sse['health_p99_ms']} ms and GET /experiments p99 {sse['experiments_p99_ms']} ms over "
        f"{sse['health_requests']} probes, {sse['probe_failures']} not 200; Redis connections at most "
        f"{sse['redis_connections_max'] if redis_url else '-'} -> {'PASS' if sse_ok else 'FAIL'}"
    )
    return {"ceiling_rps": ceiling, "held": held, "sse": sse, "pass": held_ok and sse_ok}


@contextlib.contextmanager
def private_redis() -> Iterator[str]:
    """A redis-server of this benchmark's own on a free loopback port, without persistence."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not _redis_reachable(url) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield url
    finally:
        server.kill()
        server.wait(timeout=10)


def _redis_reachable(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.exceptions.RedisError:
        return False


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 0 when every target is met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load phase")
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="open-loop request rate")
    parser.add_argument("--clients", type=int, default=50, help="SSE clients")
    parser.add_argument(
        "--redis",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        help="a Redis URL, or `private` for a redis-server of its own",
    )
    parser.add_argument("--local-only", action="store_true", help="skip the Redis store")
    args = parser.parse_args(argv)
    print(
        f"evoprune API benchmark: loopback, {os.cpu_count()} CPUs shared by the server and the load generator"
    )
    results: dict[str, Any] = {"benchmark": "api", "cpus": os.cpu_count(), "rate": args.rate}
    results["local"] = bench_store("local store", None, args)
    if not args.local_only:
        with private_redis() if args.redis == "private" else contextlib.nullcontext(args.redis) as url:
            if _redis_reachable(url):
                results["redis"] = bench_store("redis store", url, args)
    results["pass"] = all(value["pass"] for key, value in results.items() if key in ("local", "redis"))
    print(json.dumps(results))
    return 0 if results["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
