"""The feature cache: keys, the Parquet schema, atomic writes, corrupt entries, hits that build nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from evoprune.shared import atomic_files
from evoprune.shared.config import BackboneConfig
from evoprune.shared.storage import ObjectPath, storage_path
from evoprune.workers.features import backbones, feature_cache
from evoprune.workers.features.datasets import DatasetError
from evoprune.workers.features.feature_cache import (
    FeatureTable,
    cache_key,
    read_feature_file,
    resolve_cache_dir,
    source_features,
    write_feature_file,
)
from tests import s3_server

PIXELS = BackboneConfig(name="pixels", batch_size=256)
# the S3-compatible server and a fresh bucket per test, as fixtures of this module
s3_environment = s3_server.s3_environment
bucket = s3_server.bucket


def make_image_folder(root: Path, count_per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for index in range(count_per_class):
            pixels = rng.integers(0, 256, size=(6, 6, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    return root


def cache_files(cache_dir: Path) -> list[str]:
    return sorted(path.name for path in cache_dir.iterdir()) if cache_dir.exists() else []


def test_key_is_stable_and_sees_every_input(tmp_path):
    fingerprint = {"kind": "sklearn", "name": "digits", "sklearn": "1.0"}
    resnet = BackboneConfig(name="ResNet50")
    key = cache_key(fingerprint, resnet, (32, 32))
    assert key == cache_key(dict(reversed(fingerprint.items())), BackboneConfig(name="resnet50"), (32, 32))
    assert len(key) == 64
    variants = [
        cache_key(fingerprint | {"sklearn": "1.1"}, resnet, (32, 32)),
        cache_key(fingerprint, BackboneConfig(name="vgg19"), (32, 32)),
        cache_key(fingerprint, BackboneConfig(name="resnet50", weights=None), (32, 32)),
        cache_key(fingerprint, resnet, (64, 64)),
        cache_key(fingerprint, resnet, None),
    ]
    assert len({key, *variants}) == 6
    # Batch size does not change the features, so it does not change the key.
    assert cache_key(fingerprint, BackboneConfig(name="resnet50", batch_size=4), (32, 32)) == key


def test_a_weights_file_is_identified_by_its_bytes(tmp_path):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"first")
    fingerprint = {"kind": "sklearn", "name": "digits"}
    backbone = BackboneConfig(name="mobilenet", weights=str(weights))
    first = cache_key(fingerprint, backbone, (32, 32))
    moved = tmp_path / "elsewhere.h5"
    moved.write_bytes(b"first")
    assert cache_key(fingerprint, BackboneConfig(name="mobilenet", weights=str(moved)), (32, 32)) == first
    weights.write_bytes(b"second")
    assert cache_key(fingerprint, backbone, (32, 32)) != first


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(feature_cache.CACHE_DIR_ENV, raising=False)
    assert resolve_cache_dir(None) == Path("~/.cache/evoprune/features").expanduser()
    monkeypatch.setenv(feature_cache.CACHE_DIR_ENV, str(tmp_path / "env"))
    assert resolve_cache_dir(None) == tmp_path / "env"
    assert resolve_cache_dir(str(tmp_path / "config")) == tmp_path / "config"


def sample_table(folds: bool = False) -> FeatureTable:
    rows = 6
    return FeatureTable(
        features=np.arange(rows * 3, dtype=np.float32).reshape(rows, 3),
        labels=np.array([0, 1, 2, 0, 1, 2], np.int64),
        splits=np.array(["train", "train", "validation", "test", "test", "train"]),
        folds=np.array([0, 1, 0, 1, 0, 1], np.int64) if folds else None,
        class_names=("a", "b", "c"),
        key="k",
    )


@pytest.mark.parametrize("folds", [False, True])
def test_round_trip(tmp_path, folds):
    table = sample_table(folds)
    path = tmp_path / "t.parquet"
    write_feature_file(path, table, {"note": 1})
    schema = pq.read_schema(path)
    assert pa.types.is_fixed_size_list(schema.field("features").type)
    assert schema.field("features").type.value_type == pa.float32()
    back = read_feature_file(path, key="k2")
    assert np.array_equal(back.features, table.features) and back.features.dtype == np.float32
    assert np.array_equal(back.labels, table.labels) and back.labels.dtype == np.int64
    assert back.splits.tolist() == table.splits.tolist()
    assert (back.folds is None) == (not folds)
    assert back.class_names == ("a", "b", "c") and back.key == "k2"
    assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def write_parquet(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def test_bring_your_own_list_of_floats_is_accepted(tmp_path):
    path = write_parquet(
        tmp_path / "own.parquet",
        features=pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float64())),
        label=pa.array([1, 0], pa.int32()),
        split=["train", "test"],
    )
    table = read_feature_file(path)
    assert table.features.dtype == np.float32 and table.features.shape == (2, 2)
    assert table.num_classes == 2 and table.folds is None


GOOD = {
    "features": pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32())),
    "label": pa.array([1, 0], pa.int64()),
    "split": pa.array(["train", "test"]),
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": None}, "column 'features' is missing"),
        ({"label": None}, "column 'label' is missing"),
        ({"split": None}, "column 'split' is missing"),
        (
            {"features": pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float32()))},
            "'features' has rows of different",
        ),
        ({"features": pa.array(["x", "y"])}, "'features' must be a list of floats"),
        ({"features": pa.array([["x"], ["y"]])}, "'features' must hold numbers"),
        ({"features": pa.array([[1.0, None], [3.0, 4.0]], pa.list_(pa.float32()))}, "'features' holds null"),
        ({"label": pa.array([1.5, 0.0])}, "'label' must hold integers"),
        ({"label": pa.array([1, None], pa.int64())}, "'label' has 1 null"),
        ({"label": pa.array([-1, 0], pa.int64())}, "'label' holds negative"),
        ({"split": pa.array(["train", "holdout"])}, r"'split' holds \['holdout'\]"),
        ({"split": pa.array([1, 2])}, "'split' must hold strings"),
        ({"fold": pa.array([0, None], pa.int64())}, "'fold' is null on some rows"),
        ({"fold": pa.array(["a", "b"])}, "'fold' must hold integers"),
    ],
)
def test_wrong_schema_names_the_column(tmp_path, change, message):
    columns = {name: column for name, column in (GOOD | change).items() if column is not None}
    path = write_parquet(tmp_path / "bad.parquet", **columns)
    with pytest.raises(DatasetError, match=message) as caught:
        read_feature_file(path)
    assert str(path) in str(caught.value)


def test_not_a_parquet_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 nonsense")
    with pytest.raises(DatasetError, match="cannot read the Parquet file"):
        read_feature_file(path)


def test_an_ood_feature_file_ignores_label_and_split(tmp_path):
    path = write_parquet(tmp_path / "ood.parquet", features=GOOD["features"], split=pa.array(["x", "y"]))
    table = read_feature_file(path, ood=True)
    assert table.features.shape == (2, 2)
    assert table.labels.tolist() == [0, 0]


def test_second_call_reads_the_cache_and_never_builds(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first, path = source_features("sklearn:digits", backbone=PIXELS, image_size=None, cache_dir=cache)
    assert path.parent == cache and path.name == f"{first.key}.parquet"
    assert cache_files(cache) == [path.name]

    def refuse(*args, **kwargs):
        raise AssertionError("the backbone was built on a cache hit")

    monkeypatch.setattr(backbones, "build_backbone", refuse)
    second, again = source_features("sklearn:digits", backbone=PIXELS, image_size=None, cache_dir=cache)
    assert again == path
    assert np.array_equal(first.features, second.features)
    assert np.array_equal(first.labels, second.labels)
    assert second.class_names == tuple("0123456789")


def test_a_corrupt_entry_is_rebuilt(tmp_path, caplog):
    cache = tmp_path / "cache"
    folder = make_image_folder(tmp_path / "images")
    table, path = source_features(f"folder:{folder}", backbone=PIXELS, image_size=None, cache_dir=cache)
    path.write_bytes(path.read_bytes()[:100])
    rebuilt, same = source_features(f"folder:{folder}", backbone=PIXELS, image_size=None, cache_dir=cache)
    assert same == path and "rebuilding" in caplog.text
    assert np.array_equal(rebuilt.features, table.features)
    assert read_feature_file(path).features.shape == (6, 108)


def test_an_entry_recorded_under_another_key_is_rebuilt(tmp_path):
    cache = tmp_path / "cache"
    folder = make_image_folder(tmp_path / "images")
    _, path = source_features(f"folder:{folder}", backbone=PIXELS, image_size=None, cache_dir=cache)
    write_feature_file(
        path, sample_table(), {"key": "something else", "format": feature_cache.FORMAT_VERSION}
    )
    table, _ = source_features(f"folder:{folder}", backbone=PIXELS, image_size=None, cache_dir=cache)
    assert table.features.shape == (6, 108)


def test_unreadable_image_leaves_no_cache_file(tmp_path):
    cache = tmp_path / "cache"
    folder = make_image_folder(tmp_path / "images", count_per_class=40)
    (folder / "dog" / "zz.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"zz\.jpg"):
        # Small batches: several are extracted before the bad file is reached.
        source_features(
            f"folder:{folder}",
            backbone=BackboneConfig(name="pixels", batch_size=8),
            image_size=(4, 4),
            cache_dir=cache,
        )
    assert [name for name in cache_files(cache) if not name.startswith(".")] == []
    assert cache_files(cache) == []


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    # fails after the bytes are written, before the rename: the temporary file must go too
    monkeypatch.setattr(atomic_files.os, "fsync", fail)
    with pytest.raises(OSError, match="disk full"):
        write_feature_file(tmp_path / "x.parquet", sample_table(), {})
    assert cache_files(tmp_path) == []


def test_features_source_is_read_in_place(tmp_path):
    own = tmp_path / "own.parquet"
    write_feature_file(own, sample_table(), {})
    table, path = source_features(
        f"features:{own}", backbone=PIXELS, image_size=None, cache_dir=tmp_path / "c"
    )
    assert path == own and len(table.key) == 64
    assert not (tmp_path / "c").exists()
    with pytest.raises(DatasetError, match="is not a file"):
        source_features(
            f"features:{tmp_path}/none.parquet", backbone=PIXELS, image_size=None, cache_dir=tmp_path
        )


def test_cnn_features_are_cached_too(tmp_path, monkeypatch):
    mobilenet = BackboneConfig(name="mobilenet", weights=None, batch_size=64)
    cache = tmp_path / "cache"
    table, _ = source_features(
        "sklearn:sample_images", backbone=mobilenet, image_size=(32, 32), cache_dir=cache
    )
    assert table.features.shape == (884, 1024)
    monkeypatch.setattr(backbones, "build_backbone", None)
    again, _ = source_features(
        "sklearn:sample_images", backbone=mobilenet, image_size=(32, 32), cache_dir=cache
    )
    assert np.array_equal(table.features, again.features)


def test_every_changed_byte_of_a_cache_entry_is_refused_or_changes_nothing(tmp_path):
    path = tmp_path / "entry.parquet"
    write_feature_file(path, sample_table(folds=True), {"format": 1, "key": "k"})
    data = path.read_bytes()
    expected = read_feature_file(path, key="k")
    for position in range(len(data)):
        changed = bytearray(data)
        changed[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(changed))
        try:
            table = read_feature_file(path, key="k")
        except DatasetError as error:
            assert str(path) in str(error)
            continue
        # the flips that pass change nothing that is read (the digest's own marker, say)
        assert np.array_equal(table.features, expected.features), f"byte {position}"
        assert np.array_equal(table.labels, expected.labels) and table.class_names == expected.class_names


def test_a_flipped_bit_in_an_entry_is_rebuilt_to_the_same_features(tmp_path, caplog):
    folder, cache = make_image_folder(tmp_path / "images"), tmp_path / "cache"
    table, path = source_features(f"folder:{folder}", backbone=PIXELS, image_size=None, cache_dir=cache)
    data = bytearray(path.read_bytes())
    data[len(data) // 4] ^= 0x10  # inside the feature values
    path.write_bytes(bytes(data))
    rebuilt, _ = source_features(f"folder:{folder}", backbone=PIXELS, image_size=None, cache_dir=cache)
    assert "rebuilding" in caplog.text and path.name in caplog.text
    assert np.array_equal(rebuilt.features, table.features)


@pytest.mark.s3
def test_a_cache_and_a_features_source_on_object_storage(bucket, tmp_path, monkeypatch):
    # every node of a cluster finds the cache there: the entry is written once, read back without building
    cache = resolve_cache_dir(f"s3://{bucket}/features")
    assert isinstance(cache, ObjectPath)
    local, _ = source_features("sklearn:digits", backbone=PIXELS, image_size=None, cache_dir=tmp_path / "c")
    first, path = source_features("sklearn:digits", backbone=PIXELS, image_size=None, cache_dir=cache)
    assert path == cache / f"{local.key}.parquet" and first.key == local.key
    assert np.array_equal(first.features, local.features)

    def refuse(*args, **kwargs):
        raise AssertionError("the backbone was built on a cache hit")

    monkeypatch.setattr(backbones, "build_backbone", refuse)
    second, _ = source_features("sklearn:digits", backbone=PIXELS, image_size=None, cache_dir=cache)
    assert np.array_equal(second.features, local.features) and second.class_names == local.class_names
    # a user's own features file in a bucket is read in place, keyed by its bytes as a local one
    own_local = tmp_path / "own.parquet"
    write_feature_file(own_local, sample_table(), {})
    own = storage_path(f"s3://{bucket}/inputs/own.parquet")
    own.write_bytes(own_local.read_bytes())
    remote, where = source_features(f"features:{own}", backbone=PIXELS, image_size=None, cache_dir=cache)
    here, _ = source_features(f"features:{own_local}", backbone=PIXELS, image_size=None, cache_dir=cache)
    assert where == own and remote.key == here.key and np.array_equal(remote.features, here.features)
    with pytest.raises(DatasetError, match="is not a file"):
        source_features(
            f"features:s3://{bucket}/none.parquet", backbone=PIXELS, image_size=None, cache_dir=cache
        )
