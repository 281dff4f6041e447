"""Feature extraction as a unit of remote work: fills the content-addressed feature cache where it runs."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import NotRequired, TypedDict

from evoprune.shared.config import ExperimentConfig


class ExtractionReport(TypedDict):
    """What `extract_into_cache` reports; the caller adds what it `copied`."""

    cached: list[str]  # the names of the cache files, dataset first
    cache_dir: str  # on the node that extracted
    backend: str  # Keras's, which extracted
    pid: int
    node_id: str
    seconds: float
    copied: NotRequired[list[str]]  # the files brought here (this process does not share the node's cache)


def extract_into_cache(config: ExperimentConfig) -> ExtractionReport:
    """Extract (or find) the features of an experiment's dataset and OoD sources in the feature cache.

    The cache is content-addressed, so whichever node fills it, a reader that mounts the same folder finds
    the same files under the same names (`workers.features.feature_cache.cache_key`).

    Args:
        config: the experiment (Ray pickles the frozen model; nothing validates it again here).

    Returns:
        `cached` (the names of the cache files, dataset first), `cache_dir`, `backend` (Keras's, which
        extracted), `pid`, `node_id` and `seconds`.

    """
    import keras
    import ray

    from evoprune.workers.features.assemble import extract_features
    from evoprune.workers.features.feature_cache import resolve_cache_dir

    started = time.perf_counter()
    paths = extract_features(config, progress=False)
    cache_dir = resolve_cache_dir(config.cache_dir)
    return {
        # the cache's own files (a `features:` source is read where it is and is not one of them)
        "cached": [path.name for path in paths if path.parent == cache_dir],
        "cache_dir": str(cache_dir),
        "backend": keras.backend.backend(),
        "pid": os.getpid(),
        "node_id": ray.get_runtime_context().get_node_id(),
        "seconds": round(time.perf_counter() - started, 3),
    }


def read_cache_files(cache_dir: str, names: list[str]) -> dict[str, bytes]:
    """The bytes of some feature cache files, for a node that does not share this node's cache folder.

    Args:
        cache_dir: the cache folder on this node.
        names: file names in it.

    Returns:
        name -> the file's bytes.

    """
    return {name: (Path(cache_dir) / name).read_bytes() for name in names}
