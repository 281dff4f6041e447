"""Opens the store a StoreSpec names: Redis when it gives a URL, else local files."""

from __future__ import annotations

from pathlib import Path

from evoprune.shared.store import Store, StoreSpec
from evoprune.shared.store_local import LocalStore
from evoprune.shared.store_redis import RedisStore


def open_store(spec: StoreSpec) -> Store:
    """Open the store `spec` describes: Redis when it names a URL, else the local files.

    Args:
        spec: data directory, and optionally a Redis URL and key prefix.

    Returns:
        An open store.

    """
    if spec.redis_url:
        return RedisStore(spec.redis_url, prefix=spec.redis_prefix)
    return LocalStore(Path(spec.data_dir))
