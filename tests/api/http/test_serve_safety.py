"""`evoprune serve` is safe by default: no open API off loopback, trusted hosts, headers, timeouts."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from evoprune.api.http.serving_safety import is_loopback, open_problem
from tests.api.servers import free_port, wait_for

HEADER_TIMEOUT_S = 1
# generous: the server closes after HEADER_TIMEOUT_S; before the fix it never did
CLOSED_WITHIN_S = 15
MAX_CONNECTIONS = 10


@pytest.mark.parametrize(
    ("host", "token", "allow_open", "refused"),
    [
        ("127.0.0.1", None, False, False),
        ("::1", None, False, False),
        ("localhost", None, False, False),
        ("0.0.0.0", None, False, True),
        ("10.1.2.3", None, False, True),
        ("server.example.org", None, False, True),
        ("0.0.0.0", "a-token-of-32-characters-0123456789", False, False),
        ("0.0.0.0", None, True, False),
    ],
)
def test_an_open_api_off_loopback_needs_an_explicit_flag(host, token, allow_open, refused):
    problem = open_problem(host, token, allow_open)
    assert (problem is not None) == refused
    if refused:
        assert "EVOPRUNE_API_TOKEN" in problem and "--allow-open" in problem
    assert is_loopback(host) == (host in ("127.0.0.1", "::1", "localhost"))


# every documented way to start the server: each must enforce the same defaults
LAUNCHERS = {
    "serve": [sys.executable, "-m", "evoprune.api.cli", "serve"],
    "uvicorn-factory": [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "evoprune.api.http.app:app_from_environment",
    ],
}


def serve(arguments, environment, launcher="serve"):
    return subprocess.Popen(
        [*LAUNCHERS[launcher], *arguments, "--log-level", "warning"],
        env={**os.environ, "EVOPRUNE_CONNECT_RAY_ON_START": "false", "REDIS_URL": "", **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_serving_on_every_interface_without_a_token_refuses_to_start(tmp_path, launcher):
    process = serve(
        ["--host", "0.0.0.0", "--port", str(free_port())], {"EVOPRUNE_DATA_DIR": str(tmp_path)}, launcher
    )
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "EVOPRUNE_API_TOKEN" in stderr and "--allow-open" in stderr


@pytest.fixture(params=list(LAUNCHERS))
def loopback_server(tmp_path, request):
    port = free_port()
    process = serve(
        ["--host", "127.0.0.1", "--port", str(port)],
        {
            "EVOPRUNE_DATA_DIR": str(tmp_path),
            "EVOPRUNE_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
            "EVOPRUNE_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        },
        request.param,
    )

    def healthy():
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
                return answer.status == 200
        except OSError:
            return False

    try:
        wait_for(healthy, 60, "evoprune serve to answer")
        yield port
    finally:
        process.kill()
        process.communicate(timeout=30)


def raw_request(port, host_header):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    return int(head.split(" ", 2)[1]), head


def test_the_page_carries_security_headers_and_only_loopback_host_names_are_answered(loopback_server):
    status, head = raw_request(loopback_server, f"127.0.0.1:{loopback_server}")
    assert status == 200
    assert "content-security-policy:" in head and "frame-ancestors 'none'" in head
    assert "script-src 'self'" in head and "x-content-type-options: nosniff" in head
    assert raw_request(loopback_server, f"localhost:{loopback_server}")[0] == 200
    # a DNS name rebound to 127.0.0.1 is not one of the server's names
    assert raw_request(loopback_server, "attacker.example")[0] == 400


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"], ids=["nothing", "half"])
def test_a_connection_that_never_completes_its_headers_is_closed(loopback_server, sent):
    with socket.create_connection(("127.0.0.1", loopback_server), timeout=CLOSED_WITHIN_S) as connection:
        connection.sendall(sent)
        started = time.monotonic()
        try:
            closed = connection.recv(1) == b""
        except (TimeoutError, ConnectionResetError) as error:
            closed = isinstance(error, ConnectionResetError)
    assert closed and time.monotonic() - started < CLOSED_WITHIN_S


def test_connections_over_the_cap_are_answered_503(loopback_server):
    idle = [
        socket.create_connection(("127.0.0.1", loopback_server), timeout=5) for _ in range(MAX_CONNECTIONS)
    ]
    try:
        time.sleep(0.3)  # the idle ones accepted before the request that is one too many
        status, _ = raw_request(loopback_server, f"127.0.0.1:{loopback_server}")
        assert status == 503
    finally:
        for connection in idle:
            connection.close()
