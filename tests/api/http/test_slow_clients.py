"""Slow clients cannot hold `evoprune serve`'s sockets: bodies have a deadline, anonymous ones go unread."""

import os
import select
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.api.servers import free_port, wait_for

TOKEN = "slow-clients-test-token-7f3a9c2e5b1d8046"
BODY_TIMEOUT_S = 2
MAX_CONNECTIONS = 20
# generous: the server answers the anonymous at once and the authorised after BODY_TIMEOUT_S; before the
# fix both stayed open for as long as the client kept sending
CLOSED_WITHIN_S = 15
DRIP_INTERVAL_S = 0.5


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    environment = {
        **os.environ,
        "EVOPRUNE_CONNECT_RAY_ON_START": "false",
        "EVOPRUNE_RECOVER_ON_START": "false",
        "REDIS_URL": "",
        "EVOPRUNE_DATA_DIR": str(tmp_path_factory.mktemp("slow-clients")),
        "EVOPRUNE_API_TOKEN": TOKEN,
        "EVOPRUNE_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
        "EVOPRUNE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "evoprune.api.cli", "serve", "--port", str(port), "--log-level", "warning"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def live():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_for(live, 60, "evoprune serve to answer")
        yield port
    finally:
        process.kill()
        process.wait(timeout=30)


def post_head(port, authorised):
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    authorisation = f"Authorization: Bearer {TOKEN}\r\n" if authorised else ""
    connection.sendall(
        (
            f"POST /experiments HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{authorisation}"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        ).encode()
    )
    return connection


def drip_until_closed(connections, within_s):
    """Send one byte to each open connection every DRIP_INTERVAL_S; the seconds each took to close and the
    statuses answered."""
    started = time.monotonic()
    closed_after: dict[int, float] = {}
    statuses: list[int] = []
    while len(closed_after) < len(connections) and time.monotonic() - started < within_s:
        for index, connection in enumerate(connections):
            if index in closed_after:
                continue
            try:
                readable, _, _ = select.select([connection], [], [], 0)
                if readable:
                    data = connection.recv(65536)
                    if data.startswith(b"HTTP/1.1 "):
                        statuses.append(int(data.split(b" ", 2)[1]))
                        data = connection.recv(65536)  # the connection closes after the answer
                    if not data:
                        closed_after[index] = time.monotonic() - started
                        continue
                connection.sendall(b" ")
            except OSError:  # reset: the server closed with our bytes unread
                closed_after[index] = time.monotonic() - started
        time.sleep(DRIP_INTERVAL_S)
    for connection in connections:
        connection.close()
    return closed_after, statuses


def test_anonymous_slow_bodies_are_answered_401_without_being_read(server):
    connections = [post_head(server, authorised=False) for _ in range(MAX_CONNECTIONS // 2)]
    closed_after, statuses = drip_until_closed(connections, CLOSED_WITHIN_S)
    assert len(closed_after) == len(connections), f"{len(connections) - len(closed_after)} still open"
    assert set(statuses) <= {401} and statuses, statuses


def test_authorised_slow_bodies_are_closed_after_the_body_timeout(server):
    connections = [post_head(server, authorised=True) for _ in range(5)]
    closed_after, statuses = drip_until_closed(connections, CLOSED_WITHIN_S)
    assert len(closed_after) == len(connections), f"{len(connections) - len(closed_after)} still open"
    assert set(statuses) <= {408}, statuses
    assert min(closed_after.values()) >= BODY_TIMEOUT_S - DRIP_INTERVAL_S


def test_connections_over_the_cap_are_answered_503(server):
    idle = [socket.create_connection(("127.0.0.1", server), timeout=5) for _ in range(MAX_CONNECTIONS)]
    try:
        # the idle sockets are accepted (and closed after the header timeout); one more request is refused
        time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{server}/health/live", timeout=5)
        assert refused.value.code == 503
    finally:
        for connection in idle:
            connection.close()
    wait_for(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{server}/health/live", timeout=5).status == 200,
        CLOSED_WITHIN_S,
        "the server to answer again once the idle connections left",
        pause_s=0.5,
    )
