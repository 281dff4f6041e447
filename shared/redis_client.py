"""The one way this project opens a Redis client, with the one retry policy every Redis call goes through."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

CONNECT_TIMEOUT_S = 2.0
# longer than the longest blocking XREAD the store issues, so a blocked read never looks like a dead socket
SOCKET_TIMEOUT_S = 5.0
# Retries after the first attempt, on a connection error or a timeout: redis-py reconnects and sends the
# command again, waiting FIRST_DELAY_S, then twice as long each time up to MAX_DELAY_S (0.1 + 0.2 + 0.4 s).
# This is the only retry layer: nothing of ours loops around these calls. Every command we send is safe to
# send twice (NX writes, the publish script skips what is stored, reads).
RETRIES = 3
FIRST_DELAY_S = 0.05
MAX_DELAY_S = 1.0
# A client's connections are bounded (redis-py's BlockingConnectionPool): a thread that finds them all busy
# waits up to POOL_TIMEOUT_S for one, then the call fails as Redis being unreachable. Without a bound every
# thread that ever called at once kept its own idle connection for good (about 100 under 300 SSE clients).
MAX_CONNECTIONS = 16
POOL_TIMEOUT_S = 5.0


def open_redis(
    url: str,
    retries: int = RETRIES,
    max_connections: int = MAX_CONNECTIONS,
    pool_timeout_s: float = POOL_TIMEOUT_S,
    **options: object,
) -> redis.Redis:
    """A client for `url` with this project's timeouts, retry policy and bounded connection pool.

    Args:
        url: `redis://[:password@]host:port/db`.
        retries: attempts after the first; 0 for calls that must answer at once (health checks, polls
            that are repeated anyway).
        max_connections: the most connections the client opens; more callers at once wait for one.
        pool_timeout_s: the longest a caller waits for a free connection before the call fails.
        **options: further connection options (e.g. `client_name`).

    Returns:
        The client; it connects on its first command.

    """
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout_s,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=MAX_DELAY_S, base=FIRST_DELAY_S), retries),
        **options,
    )
    client = redis.Redis(connection_pool=pool)
    # the pool is this client's alone: closing the client disconnects it
    client.auto_close_connection_pool = True
    return client
