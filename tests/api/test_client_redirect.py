"""The Python client sends its bearer token to the server's origin only, never after a redirect elsewhere."""

import http.server
import json
import threading

import pytest

from evoprune.api.client import Client

TOKEN = "s3cr3t-token-for-tests-0123456789"


class Recording(http.server.BaseHTTPRequestHandler):
    """Answers every GET: a redirect when the server has a `target`, else an empty experiment list."""

    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        moved = "moved=1" in self.path
        if self.server.target is not None and not moved:
            self.send_response(302)
            separator = "&" if "?" in self.path else "?"
            self.send_header("Location", f"{self.server.target}{self.path}{separator}moved=1")
            self.end_headers()
            return
        body = json.dumps({"experiments": [], "total": 0}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        return


@pytest.fixture
def start_server():
    started = []

    def start(target=None, host="127.0.0.1"):
        server = http.server.ThreadingHTTPServer((host, 0), Recording)
        server.seen, server.target = [], target
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server, f"http://{host}:{server.server_address[1]}"

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_another_host_does_not_carry_the_token(start_server):
    other, other_url = start_server()
    _, redirecting_url = start_server(target=other_url)
    Client(redirecting_url, token=TOKEN).experiments()
    assert other.seen and all(authorization is None for _, authorization in other.seen)


def test_a_redirect_within_the_origin_keeps_the_token(start_server):
    server, url = start_server()
    # the server sends every request not yet moved to the same path under ?moved=1: its own origin
    server.target = url
    Client(url, token=TOKEN).experiments()
    assert [authorization for _, authorization in server.seen] == [f"Bearer {TOKEN}"] * 2
