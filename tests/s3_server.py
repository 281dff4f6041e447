"""A real S3-compatible server for tests: moto's standalone server on loopback, and buckets on it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# what a process needs to reach the server: the standard AWS variables, as a user sets them for MinIO
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test-key",
    "AWS_SECRET_ACCESS_KEY": "test-secret",
    "AWS_REGION": "us-east-1",
}
START_TIMEOUT_S = 30


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def s3_server(server_environment: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Run moto's server on a free loopback port; yields the environment that points a client at it.

    `server_environment` adds to the server's own environment (`INITIAL_NO_AUTH_ACTION_COUNT=0`: it checks
    credentials, and refuses ours at once).
    """
    pytest.importorskip("moto.server", reason="the test extra's moto[server] is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(server_environment or {})},
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.1)
        yield {**CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    finally:
        process.terminate()
        process.wait(timeout=10)


def new_bucket(environment: dict[str, str]) -> str:
    """Create a bucket with a fresh name on the server and return its name."""
    import boto3

    name = f"evoprune-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=environment["AWS_ENDPOINT_URL"],
        aws_access_key_id=environment["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=environment["AWS_SECRET_ACCESS_KEY"],
        region_name=environment["AWS_REGION"],
    )
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def s3_environment() -> Iterator[dict[str, str]]:
    """A running server; its variables are set in this process's environment while the module's tests run."""
    with s3_server() as environment:
        saved = {name: os.environ.get(name) for name in environment}
        os.environ.update(environment)
        try:
            yield environment
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@pytest.fixture
def bucket(s3_environment: dict[str, str]) -> str:
    """A fresh, empty bucket for one test."""
    return new_bucket(s3_environment)
