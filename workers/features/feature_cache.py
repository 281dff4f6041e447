"""The content-addressed feature cache: one Parquet file per (source, backbone, weights, image size)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from evoprune.shared.config import BackboneConfig
from evoprune.shared.parquet_files import read_verified_parquet, write_parquet
from evoprune.shared.storage import ObjectPath, StoragePath, is_object_uri, storage_path
from evoprune.workers.features import backbones
from evoprune.workers.features.datasets import (
    DEFAULT_RESIZE,
    SPLITS,
    DatasetError,
    ImageSource,
    open_image_source,
)

FORMAT_VERSION = 1
METADATA_KEY = b"evoprune"
CACHE_DIR_ENV = "EVOPRUNE_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/evoprune/features")
HASH_CHUNK_BYTES = 1 << 20
CACHE_FILE_MODE = 0o644
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureTable:
    """The features of every sample of one source, with labels, splits and (for k-fold data) folds."""

    features: np.ndarray  # (N, D) float32
    labels: np.ndarray  # (N,) int64
    splits: np.ndarray  # (N,) str: train / validation / test
    folds: np.ndarray | None  # (N,) int64 partition index, or None when the source has no folds
    class_names: tuple[str, ...]
    key: str

    @property
    def num_classes(self) -> int:
        """Classes named by the source, or else the largest label + 1."""
        if self.class_names:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if len(self.labels) else 0


def canonical_hash(value: Any) -> str:
    """Hash (sha256) a canonical JSON rendering (sorted keys, no spaces) of `value`."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def file_sha256(path: StoragePath) -> str:
    """Hash (sha256) a file's bytes, read in chunks (an object on object storage: in one read)."""
    if isinstance(path, ObjectPath):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(backbone: BackboneConfig) -> str | None:
    """Name what decides the weights: `imagenet`, None, or `sha256:<hash>` of a weights file's bytes."""
    if backbone.name.lower() == backbones.PIXELS:
        return None
    if backbone.weights in ("imagenet", None):
        return backbone.weights
    path = Path(backbone.weights).expanduser()
    if not path.is_file():
        raise backbones.BackboneError(f"backbone weights file {path} does not exist")
    return "sha256:" + file_sha256(path)


def cache_key(
    fingerprint: dict[str, Any],
    backbone: BackboneConfig,
    image_size: tuple[int, int] | None,
    resize: str = DEFAULT_RESIZE,
) -> str:
    """Compute the content address of one source's features.

    Args:
        fingerprint: the source's fingerprint (see `workers.features.datasets`).
        backbone: the feature extractor.
        image_size: (height, width) the images are resized to, or None.
        resize: the interpolation of every resize (config `dataset.resize`).

    Returns:
        A sha256 hex digest.

    """
    keyed: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "dataset": fingerprint,
        "backbone": backbone.name.lower(),
        "weights": weights_identity(backbone),
        "image_size": list(image_size) if image_size else None,
    }
    # named only off the default, so that caches written before the option existed keep their keys
    if resize != DEFAULT_RESIZE:
        keyed["resize"] = resize
    return canonical_hash(keyed)


def resolve_cache_dir(configured: str | None) -> StoragePath:
    """Pick the cache folder: the config's `cache_dir`, else $EVOPRUNE_CACHE_DIR, else the default.

    An s3:// or gs:// URI puts the cache on object storage, where every node of a cluster finds it.
    """
    chosen = configured or os.environ.get(CACHE_DIR_ENV) or str(DEFAULT_CACHE_DIR)
    return _local_or_object(chosen)


def _local_or_object(text: str) -> StoragePath:
    return storage_path(text) if is_object_uri(text) else Path(text).expanduser()


def _column(table: pa.Table, name: str, origin: str) -> pa.Array:
    if name not in table.column_names:
        raise DatasetError(f"{origin}: column {name!r} is missing (columns: {', '.join(table.column_names)})")
    column = table.column(name).combine_chunks()
    if column.null_count and name != "fold":
        raise DatasetError(f"{origin}: column {name!r} has {column.null_count} null values")
    return column


def _features_matrix(column: pa.Array, origin: str) -> np.ndarray:
    kind = column.type
    if not (pa.types.is_fixed_size_list(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        raise DatasetError(f"{origin}: column 'features' must be a list of floats, not {kind}")
    value_type = kind.value_type
    if not (pa.types.is_floating(value_type) or pa.types.is_integer(value_type)):
        raise DatasetError(f"{origin}: column 'features' must hold numbers, not {value_type}")
    if pa.types.is_fixed_size_list(kind):
        width = kind.list_size
    else:
        lengths = np.diff(np.asarray(column.offsets))
        if len(lengths) and np.any(lengths != lengths[0]):
            raise DatasetError(
                f"{origin}: column 'features' has rows of different lengths "
                f"({int(lengths.min())}..{int(lengths.max())}); every row needs the same number of features"
            )
        width = int(lengths[0]) if len(lengths) else 0
    values = column.flatten()
    if values.null_count:
        raise DatasetError(f"{origin}: column 'features' holds null values")
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(len(column), width)


def read_feature_file(path: StoragePath, *, ood: bool = False, key: str = "") -> FeatureTable:
    """Read and check a features Parquet file (bring-your-own features, or a cache entry).

    Args:
        path: the file: `features` (list of floats, the same length on every row), `label` (int),
            `split` (train / validation / test) and an optional `fold` (int).
        ood: an OoD source: only `features` is read; every row counts as one class and one split.
        key: the key to record in the table (its content address).

    Returns:
        The table.

    Raises:
        DatasetError: the file cannot be read, or a column is missing or malformed (the message names it).

    """
    return _feature_table(_read_parquet(path), str(path), ood=ood, key=key)


def _read_parquet(path: StoragePath) -> pa.Table:
    # a cache entry carries a whole-file digest and page checksums; a user's own file may have neither
    try:
        return read_verified_parquet(path)
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the Parquet file: {error}") from None


def _feature_table(table: pa.Table, origin: str, *, ood: bool, key: str) -> FeatureTable:
    features = _features_matrix(_column(table, "features", origin), origin)
    rows = len(features)
    metadata = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    class_names = tuple(metadata.get("class_names", ()))
    if ood:
        return FeatureTable(features, np.zeros(rows, np.int64), np.full(rows, "train"), None, (), key)
    label = _column(table, "label", origin)
    if not pa.types.is_integer(label.type):
        raise DatasetError(f"{origin}: column 'label' must hold integers, not {label.type}")
    labels = np.asarray(label.to_numpy(), dtype=np.int64)
    if len(labels) and labels.min() < 0:
        raise DatasetError(f"{origin}: column 'label' holds negative values")
    split_values = _column(table, "split", origin).to_pylist()
    if not all(isinstance(value, str) for value in split_values):
        raise DatasetError(f"{origin}: column 'split' must hold strings (train, validation or test)")
    splits = np.asarray(split_values, dtype=str)
    unknown = sorted(set(np.unique(splits).tolist()) - set(SPLITS))
    if unknown:
        allowed = ", ".join(SPLITS)
        raise DatasetError(f"{origin}: column 'split' holds {unknown}; allowed values are {allowed}")
    folds = _read_folds(table, origin) if "fold" in table.column_names else None
    if class_names and len(labels) and labels.max() >= len(class_names):
        raise DatasetError(f"{origin}: column 'label' exceeds the {len(class_names)} named classes")
    return FeatureTable(features, labels, splits, folds, class_names, key)


def _read_folds(table: pa.Table, origin: str) -> np.ndarray | None:
    fold = _column(table, "fold", origin)
    if not pa.types.is_integer(fold.type) and not pa.types.is_null(fold.type):
        raise DatasetError(f"{origin}: column 'fold' must hold integers, not {fold.type}")
    if fold.null_count == len(fold):
        return None
    if fold.null_count:
        raise DatasetError(f"{origin}: column 'fold' is null on some rows only; fill it on all or none")
    folds = np.asarray(fold.to_numpy(), dtype=np.int64)
    if folds.min() < 0:
        raise DatasetError(f"{origin}: column 'fold' holds negative values")
    return folds


def write_feature_file(path: StoragePath, table: FeatureTable, metadata: dict[str, Any]) -> None:
    """Write a table atomically: a temporary file renamed into place, or on object storage one upload.

    Args:
        path: the destination.
        table: what to write.
        metadata: recorded in the Parquet schema metadata, with the class names.

    """
    rows, width = table.features.shape
    flat = pa.array(np.ascontiguousarray(table.features, dtype=np.float32).reshape(-1), type=pa.float32())
    fold = pa.array(table.folds, pa.int64()) if table.folds is not None else pa.nulls(rows, pa.int64())
    columns = {
        "features": pa.FixedSizeListArray.from_arrays(flat, width),
        "label": pa.array(table.labels, pa.int64()),
        "split": pa.array(table.splits.tolist(), pa.string()),
        "fold": fold,
    }
    recorded = metadata | {"class_names": list(table.class_names)}
    arrow = pa.table(columns).replace_schema_metadata({METADATA_KEY: json.dumps(recorded).encode()})
    # a cache is meant to be shared like any other file, whatever the writer's umask
    # page checksums and a whole-file digest: a damaged entry is detected on reading and rebuilt
    write_parquet(path, arrow, mode=CACHE_FILE_MODE)


def _extract(source: ImageSource, backbone: BackboneConfig, resize: str, progress: bool) -> FeatureTable:
    """Run every image of `source` through the backbone, built on the first chunk once the size is known."""
    extractor: backbones.Backbone | None = None
    first_shape: tuple[int, ...] | None = None
    features, labels, splits, folds = [], [], [], []
    with tqdm(
        total=source.size, desc=f"features {source.spec}", unit="img", file=sys.stderr, disable=not progress
    ) as bar:
        for chunk in source.chunks(backbone.batch_size):
            if first_shape is None:
                first_shape = chunk.images.shape[1:]
                height, width = first_shape[:2]
                extractor = backbones.build_backbone(backbone.name, backbone.weights, (height, width), resize)
            elif chunk.images.shape[1:] != first_shape:
                raise DatasetError(
                    f"{source.spec}: images of shape {chunk.images.shape[1:]} and {first_shape} are mixed; "
                    "set dataset.image_size"
                )
            assert extractor is not None
            features.append(extractor.extract(chunk.images, source.pixel_max))
            labels.append(chunk.labels)
            splits.append(np.full(len(chunk.labels), chunk.split))
            folds.append(np.full(len(chunk.labels), -1 if chunk.fold is None else chunk.fold, np.int64))
            bar.update(len(chunk.labels))
    if not features:
        raise DatasetError(f"{source.spec}: the source holds no images")
    fold_column = np.concatenate(folds)
    return FeatureTable(
        np.concatenate(features),
        np.concatenate(labels),
        np.concatenate(splits),
        fold_column if np.all(fold_column >= 0) else None,
        source.class_names,
        "",
    )


def _read_cache_entry(path: StoragePath, key: str) -> FeatureTable:
    """Read a cache file, accepted only if its recorded key and format match what was asked for."""
    table = _read_parquet(path)
    try:
        metadata = json.loads((table.schema.metadata or {}).get(METADATA_KEY, b"{}"))
    except ValueError as error:
        raise DatasetError(f"{path}: cannot read the recorded metadata: {error}") from None
    if metadata.get("key") != key or metadata.get("format") != FORMAT_VERSION:
        raise DatasetError(f"{path}: recorded key/format do not match the file name")
    return _feature_table(table, str(path), ood=False, key=key)


def source_features(
    spec: str,
    *,
    backbone: BackboneConfig,
    image_size: tuple[int, int] | None,
    cache_dir: StoragePath,
    folds: int | None = None,
    ood: bool = False,
    progress: bool = True,
    resize: str = DEFAULT_RESIZE,
) -> tuple[FeatureTable, StoragePath]:
    """Get the features of one source, read from the cache or extracted once and cached.

    Args:
        spec: the source (`sklearn:`, `tfds:`, `folder:` or `features:`).
        backbone: the feature extractor; ignored for `features:` sources.
        image_size: (height, width) the images are resized to, or None.
        cache_dir: the cache folder (local, or a prefix on object storage).
        folds: the expected partition count of a k-fold folder.
        ood: read a `features:` source as an OoD pool (label and split ignored).
        progress: show a progress bar on stderr while extracting.
        resize: the interpolation of every resize, the dataset's and the backbone's (config
            `dataset.resize`); ignored for `features:` sources.

    Returns:
        The table (its `key` is the content address) and the file it was read from.

    """
    kind, _, rest = spec.partition(":")
    if kind == "features":
        path = _local_or_object(rest)
        if not path.is_file():
            raise DatasetError(f"{spec}: {path} is not a file")
        key = canonical_hash({"format": FORMAT_VERSION, "features_sha256": file_sha256(path), "ood": ood})
        return read_feature_file(path, ood=ood, key=key), path
    source = open_image_source(spec, image_size=image_size, folds=folds, resize=resize)
    key = cache_key(source.fingerprint, backbone, image_size, resize)
    path = cache_dir / f"{key}.parquet"
    if path.exists():
        try:
            table = _read_cache_entry(path, key)
        except DatasetError as error:
            logger.warning("feature cache entry %s is unreadable, rebuilding it: %s", path, error)
        else:
            return table, path
    table = _extract(source, backbone, resize, progress)
    table = FeatureTable(table.features, table.labels, table.splits, table.folds, table.class_names, key)
    metadata = {
        "format": FORMAT_VERSION,
        "key": key,
        "source": spec,
        "backbone": backbone.name.lower(),
        "weights": weights_identity(backbone),
        "image_size": list(image_size) if image_size else None,
        "resize": resize,
    }
    write_feature_file(path, table, metadata)
    return table, path
