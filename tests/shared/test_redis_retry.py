"""One retry layer for Redis: redis-py's, configured in shared/redis_client.py; bounded, and it recovers."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from evoprune.shared import redis_client
from evoprune.shared.fitness_cache_redis import RedisFitnessCache
from evoprune.shared.store import StoreUnavailableError
from evoprune.shared.store_redis import RedisStore

EXPERIMENT_ID = "0123456789abcdef"
# the waits of one call that keeps failing: 0.1 + 0.2 + 0.4 s, plus time for the attempts themselves
RETRY_WAITS_S = sum(
    min(redis_client.MAX_DELAY_S, redis_client.FIRST_DELAY_S * 2**failure)
    for failure in range(1, redis_client.RETRIES + 1)
)


def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class SlammingServer:
    """Accepts each connection and closes it at once, counting them: a Redis that is gone."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self._socket.close()


@pytest.fixture
def gone() -> Iterator[SlammingServer]:
    server = SlammingServer()
    try:
        yield server
    finally:
        server.close()


def test_a_failing_call_is_tried_once_plus_the_retries_and_then_reported(gone):
    store = RedisStore(f"redis://127.0.0.1:{gone.port}/0", prefix="x")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match="cannot be reached"):
        store.get(EXPERIMENT_ID)
    elapsed = time.monotonic() - started
    # one layer: 1 + RETRIES connections (a loop of ours around redis-py's would multiply them)
    assert gone.accepted == 1 + redis_client.RETRIES
    assert RETRY_WAITS_S * 0.9 <= elapsed < RETRY_WAITS_S + 2.0


def test_the_health_check_asks_once(gone):
    store = RedisStore(f"redis://127.0.0.1:{gone.port}/0", prefix="x")
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError):
        store.ping()
    assert gone.accepted == 1 and time.monotonic() - started < 1.0


def test_every_redis_client_of_ours_has_the_one_policy():
    store = RedisStore(redis_url(), prefix="x")
    cache = RedisFitnessCache(redis_url())
    try:
        for client in (store._client, cache._client, store.fitness_cache()._client):
            assert client.get_retry().get_retries() == redis_client.RETRIES
        assert store._once.get_retry().get_retries() == 0
    finally:
        store.close()


@pytest.mark.redis
def test_a_connection_killed_mid_command_recovers_within_the_bound():
    name = f"evoprune-retry-test-{uuid.uuid4().hex[:12]}"
    client = redis_client.open_redis(redis_url(), client_name=name)
    admin = redis.Redis.from_url(redis_url())
    block_ms = 1500
    result: dict[str, object] = {}

    def blocked_read() -> None:
        started = time.monotonic()
        try:
            result["answer"] = client.xread({f"{name}:nothing": "0-0"}, block=block_ms)
        except redis.exceptions.RedisError as error:
            result["error"] = error
        result["seconds"] = time.monotonic() - started

    reader = threading.Thread(target=blocked_read)
    reader.start()
    try:
        # only our own connection, found by its name while it blocks: other clients of this Redis are left be
        deadline = time.monotonic() + 5
        while not (
            ours := [c for c in admin.client_list() if c.get("name") == name and c.get("cmd") == "xread"]
        ):
            assert time.monotonic() < deadline, "the blocked read never showed up"
            time.sleep(0.05)
        assert admin.client_kill_filter(_id=ours[0]["id"]) == 1
    finally:
        reader.join(timeout=30)
        client.close()
        admin.close()
    # redis-py reconnected and sent the read again, which then ran its full block time
    assert "error" not in result, result.get("error")
    assert result["answer"] == []
    assert float(result["seconds"]) < 2 * block_ms / 1000 + RETRY_WAITS_S + 1.0  # type: ignore[arg-type]
