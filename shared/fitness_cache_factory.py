"""Opens the fitness cache an experiment uses: Redis when a URL is given, else a local file."""

from __future__ import annotations

from pathlib import Path

from evoprune.shared.fitness_cache import FitnessCache, LocalFitnessCache
from evoprune.shared.fitness_cache_redis import RedisFitnessCache


def open_fitness_cache(local_path: str | Path | None, redis_url: str | None = None) -> FitnessCache:
    """Open the cache an experiment should use: Redis when a URL is given, else the local file.

    Args:
        local_path: the JSON-lines file of the local cache (None keeps it in memory).
        redis_url: a redis:// URL (usually from REDIS_URL); shares the cache across experiments.

    Returns:
        An open cache.

    """
    if redis_url:
        return RedisFitnessCache(redis_url)
    return LocalFitnessCache(local_path)
