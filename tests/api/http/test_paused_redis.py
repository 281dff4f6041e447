"""With Redis paused, the page, its files and /health still answer at once (issue 13)."""

import os
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest

from tests.api.servers import ApiServer, PrivateRedis

pytestmark = pytest.mark.redis
PAUSE_S = 5.0
# generous: an answer from memory takes milliseconds; before the fix the page waited out the store
PAGE_WITHIN_S = 2.5
HEALTH_WITHIN_S = 4.5


def timed_get(url):
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=60) as answer:
            status = answer.status
            answer.read()
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.monotonic() - started


@pytest.fixture
def paused_setup(tmp_path):
    redis_server = PrivateRedis()
    redis_server.start()
    server = ApiServer(
        {
            "REDIS_URL": redis_server.url,
            "EVOPRUNE_DATA_DIR": str(tmp_path / "data"),
            "EVOPRUNE_CONNECT_RAY_ON_START": "false",
            "EVOPRUNE_RECOVER_ON_START": "false",
        },
        tmp_path / "server.log",
    )
    server.start()
    try:
        yield redis_server, server
    finally:
        server.kill()
        redis_server.stop()


def test_a_paused_redis_stalls_neither_the_page_nor_health(paused_setup):
    redis_server, server = paused_setup
    assert timed_get(server.url + "/static/app.js")[0] == 200
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        # requests that wait on the store while the page is fetched
        record_url = f"{server.url}/experiments/0123456789abcdef"
        waiting = [threading.Thread(target=timed_get, args=(record_url,), daemon=True) for _ in range(8)]
        for thread in waiting:
            thread.start()
        time.sleep(0.3)
        for path in ("/static/app.js", "/", "/static/style.css"):
            status, seconds = timed_get(server.url + path)
            assert status == 200 and seconds < PAGE_WITHIN_S, (path, status, seconds)
        status, seconds = timed_get(server.url + "/health")
        assert status == 503 and seconds < HEALTH_WITHIN_S, (status, seconds)
        time.sleep(max(0.0, PAUSE_S - 1.0))
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    for thread in waiting:
        thread.join(timeout=60)
    assert timed_get(server.url + "/health")[0] == 200
    assert timed_get(server.url + "/experiments")[0] == 200
