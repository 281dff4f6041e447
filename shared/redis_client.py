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


def open_redis(url: str, retries: int = RETRIES, **options: object) -> redis.Redis:
    """A client for `url` with this project's timeouts and retry policy.

    Args:
        url: `redis://[:password@]host:port/db`.
        retries: attempts after the first; 0 for calls that must answer at once (health checks, polls
            that are repeated anyway).
        **options: further `redis.Redis` options (e.g. `client_name`).

    Returns:
        The client; it connects on its first command.

    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=SOCKET_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=MAX_DELAY_S, base=FIRST_DELAY_S), retries),
        **options,
    )
