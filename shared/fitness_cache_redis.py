"""The fitness cache in Redis: shared by every experiment on the same features and protocol."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import redis

from evoprune.shared.fitness_cache import FitnessCache
from evoprune.shared.objectives import Evaluation
from evoprune.shared.redis_client import open_redis

DEFAULT_PREFIX = "evoprune:fitness:"


class RedisFitnessCache(FitnessCache):
    """One Redis string per key, holding the Evaluation as JSON."""

    def __init__(self, url: str, prefix: str = DEFAULT_PREFIX, client: redis.Redis | None = None) -> None:
        self._url = url
        self._prefix = prefix
        self._client = client if client is not None else open_redis(url)

    def get_many(self, keys: Iterable[str]) -> dict[str, Evaluation]:
        wanted = list(keys)
        if not wanted:
            return {}
        values = self._client.mget([self._prefix + key for key in wanted])
        found = {}
        for key, value in zip(wanted, values, strict=True):
            if value is None:
                continue
            try:
                found[key] = Evaluation.from_dict(json.loads(value))
            except (ValueError, TypeError):
                continue  # an unreadable entry is treated as a miss and overwritten later
        return found

    def put_many(self, entries: Mapping[str, Evaluation]) -> None:
        if not entries:
            return
        pipeline = self._client.pipeline(transaction=False)
        for key, value in entries.items():
            # nx: the first writer wins, so concurrent experiments never replace an entry under a reader
            pipeline.set(self._prefix + key, json.dumps(value.to_dict()), nx=True)
        pipeline.execute()

    def delete_all(self) -> int:
        """Remove every key under this cache's prefix.

        Returns:
            How many keys were removed.

        """
        removed = 0
        batch: list[bytes] = []
        for name in self._client.scan_iter(match=self._prefix + "*", count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                removed += int(self._client.delete(*batch))
                batch = []
        if batch:
            removed += int(self._client.delete(*batch))
        return removed

    def describe(self) -> str:
        return f"redis {self._url} (prefix {self._prefix})"

    def close(self) -> None:
        self._client.close()
