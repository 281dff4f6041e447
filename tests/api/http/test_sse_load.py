"""300 SSE clients on Redis: every client gets every event; /health and the list stay 200 (issue 13)."""

import asyncio
import secrets

import pytest

from evoprune.benchmarks.bench_api import private_redis, sse_fan_out, start_server
from evoprune.shared.store import StoreSpec
from evoprune.shared.store_factory import open_store

pytestmark = [pytest.mark.slow, pytest.mark.redis]
CLIENTS = 300
# the server's threads that may hold a connection: the record dependency (64), client calls (16), the
# one feed, the publisher's; before, every waiting client held one
MOST_REDIS_CONNECTIONS = 100


def test_300_sse_clients_each_receive_every_event_while_the_api_answers(tmp_path):
    with private_redis() as url:
        prefix = f"evoprune-load-{secrets.token_hex(4)}"
        store = open_store(StoreSpec(data_dir=str(tmp_path), redis_url=url, redis_prefix=prefix))
        server, port = start_server(tmp_path, url, prefix)
        try:
            result = asyncio.run(sse_fan_out(port, store, tmp_path, CLIENTS, url))
        finally:
            server.terminate()
            server.wait(timeout=30)
            store.close()
    assert result["clients_with_every_event"] == CLIENTS, result
    assert result["clients_done"] == CLIENTS, result
    assert result["probe_failures"] == 0, result
    assert result["health_requests"] > 0 and result["experiments_requests"] > 0
    assert result["redis_connections_max"] < MOST_REDIS_CONNECTIONS, result
