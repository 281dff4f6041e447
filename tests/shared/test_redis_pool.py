"""A Redis store never holds more connections than its pools' bounds, however many threads call it at once."""

import threading
import time

import pytest
import redis

from evoprune.shared.redis_client import MAX_CONNECTIONS
from evoprune.shared.store_redis import BLOCKING_CONNECTIONS, ONCE_CONNECTIONS, RedisStore
from tests.api.servers import PrivateRedis
from tests.shared.test_store import ident, new_record

pytestmark = pytest.mark.redis

# as many callers as the API's feed and request threads together could be, well past the bound
THREADS = 160
ROUNDS = 4
JOIN_S = 60


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_many_concurrent_callers_stay_within_the_connection_bound(private_redis):
    store = RedisStore(private_redis.url, prefix="pool")
    observer = redis.Redis.from_url(private_redis.url)
    experiment_id = ident(1)
    store.create(new_record(experiment_id))
    bound = MAX_CONNECTIONS + ONCE_CONNECTIONS + BLOCKING_CONNECTIONS
    peak = [0]
    done = threading.Event()
    errors: list[BaseException] = []

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], len(observer.client_list()) - 1)  # less the observer itself
            time.sleep(0.02)

    def work(n):
        try:
            for _ in range(ROUNDS):
                if n % 2:
                    # what an SSE feed does while an experiment is quiet: a blocking read
                    store.wait_events(experiment_id, 0, timeout_s=0.3)
                else:
                    store.get(experiment_id)
                    store.read_events(experiment_id)
                    store.cancel_requested(experiment_id)
                    store.ping()
        except BaseException as error:  # every call must succeed, waiting for a connection if need be
            errors.append(error)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    workers = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(THREADS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(JOIN_S)
    done.set()
    watcher.join(JOIN_S)
    try:
        assert not errors, errors[:3]
        assert peak[0] <= bound, f"{peak[0]} connections, more than the bound of {bound}"
        # the load was enough to fill the blocking reads' pool: the bound was what held
        assert peak[0] >= BLOCKING_CONNECTIONS
        # closing the store lets every connection go
        store.close()
        time.sleep(0.2)
        assert len(observer.client_list()) == 1
    finally:
        observer.close()
