"""Image sources: the sklearn demo pair, class folders in their three layouts, and TFDS (mocked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evoprune.workers.features.datasets import DatasetError, ImageSource, open_image_source, photo_patches


def write_image(path: Path, seed: int, size: tuple[int, int] = (12, 10), suffix: str = ".png") -> Path:
    """A small random RGB image; `size` is (height, width)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)
    target = path.with_suffix(suffix)
    Image.fromarray(pixels).save(target)
    return target


def make_folder(root: Path, parts: dict[str, dict[str, int]], size: tuple[int, int] = (12, 10)) -> Path:
    """Class folders: parts maps a sub-path ('train', 'partition0', '.') to {class: image count}."""
    seed = 0
    for part, classes in parts.items():
        for name, count in classes.items():
            for index in range(count):
                seed += 1
                suffix = ".jpg" if index % 2 else ".png"
                write_image(root / part / name / f"img{index}", seed, size, suffix)
    return root


def read_all(source: ImageSource, batch_size: int = 4):
    chunks = list(source.chunks(batch_size))
    return chunks, np.concatenate([chunk.labels for chunk in chunks])


def test_digits_source_is_the_sklearn_digits():
    source = open_image_source("sklearn:digits")
    chunks, labels = read_all(source, batch_size=500)
    images = np.concatenate([chunk.images for chunk in chunks])
    assert source.size == len(labels) == 1797
    assert images.shape == (1797, 8, 8, 1)
    assert images.max() == 16 and source.pixel_max == 16
    assert {chunk.split for chunk in chunks} == {"train"}
    assert source.class_names == tuple("0123456789")
    assert source.fingerprint["kind"] == "sklearn" and "sklearn" in source.fingerprint


def test_digits_resized_on_request():
    chunks, _ = read_all(open_image_source("sklearn:digits", image_size=(16, 12)), batch_size=2000)
    assert chunks[0].images.shape == (1797, 16, 12, 1)


def test_sample_images_are_photo_patches_in_the_digits_space():
    source = open_image_source("sklearn:sample_images")
    chunks, labels = read_all(source, batch_size=10_000)
    images = chunks[0].images
    assert source.class_names == ("china", "flower")
    assert len(labels) == source.size == 884
    assert np.bincount(labels).tolist() == [442, 442]
    assert images.shape == (884, 8, 8, 1)
    assert images.min() >= 0 and images.max() <= 16
    assert np.array_equal(images, np.rint(images))
    # Real photo content: patches differ from each other and have structure within.
    assert len(np.unique(images.reshape(884, -1), axis=0)) > 600
    assert images.reshape(884, -1).std(axis=1).mean() > 0.5
    again, _ = read_all(open_image_source("sklearn:sample_images"), batch_size=10_000)
    assert np.array_equal(images, again[0].images)


def test_photo_patches_average_blocks_and_quantise():
    photo = np.zeros((48, 24, 3), np.uint8)
    photo[:24] = 255
    photo[24:, :, 0] = 255  # pure red: gray level 0.299 × 255
    patches = photo_patches(photo)
    assert patches.shape == (2, 8, 8)
    assert np.all(patches[0] == 16)
    assert np.all(patches[1] == round(0.299 * 16))


def test_unknown_sklearn_source():
    with pytest.raises(DatasetError, match="sklearn:iris"):
        open_image_source("sklearn:iris")


def test_folder_with_train_and_test(tmp_path):
    root = make_folder(tmp_path / "data", {"train": {"b": 3, "a": 2}, "test": {"a": 1, "b": 2}})
    source = open_image_source(f"folder:{root}", image_size=(6, 5))
    chunks, labels = read_all(source, batch_size=2)
    assert source.class_names == ("a", "b")
    assert source.size == 8
    assert [chunk.split for chunk in chunks] == ["train"] * 3 + ["test"] * 2
    assert labels.tolist() == [0, 0, 1, 1, 1, 0, 1, 1]
    assert all(chunk.images.shape[1:] == (6, 5, 3) and chunk.images.dtype == np.uint8 for chunk in chunks)
    assert all(chunk.fold is None for chunk in chunks)


def test_folder_keeps_the_native_size(tmp_path):
    root = make_folder(tmp_path / "data", {".": {"x": 2, "y": 1}}, size=(9, 7))
    chunks, labels = read_all(open_image_source(f"folder:{root}"))
    assert chunks[0].images.shape == (3, 9, 7, 3)
    assert labels.tolist() == [0, 0, 1]


def test_folder_with_partitions(tmp_path):
    parts = {f"partition{index}": {"coral": 2, "sand": 1} for index in range(3)}
    root = make_folder(tmp_path / "data", parts)
    source = open_image_source(f"folder:{root}", image_size=(8, 8), folds=3)
    chunks, _ = read_all(source, batch_size=10)
    assert [chunk.fold for chunk in chunks] == [0, 1, 2]
    assert all(len(chunk.labels) == 3 for chunk in chunks)
    with pytest.raises(DatasetError, match=r"dataset\.folds is 5 but 3 partition"):
        open_image_source(f"folder:{root}", folds=5)


def test_partitions_must_be_numbered_from_zero(tmp_path):
    root = make_folder(tmp_path / "data", {"partition1": {"a": 1}, "partition2": {"a": 1}})
    with pytest.raises(DatasetError, match=r"numbered 0..k-1"):
        open_image_source(f"folder:{root}")


def test_unreadable_image_names_the_file(tmp_path):
    root = make_folder(tmp_path / "data", {".": {"a": 2}})
    broken = root / "a" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a jpeg")
    source = open_image_source(f"folder:{root}", image_size=(4, 4))
    with pytest.raises(DatasetError, match=r"cannot read image .*broken\.jpg"):
        read_all(source)


def test_mixed_sizes_need_an_image_size(tmp_path):
    root = tmp_path / "data"
    write_image(root / "a" / "one", 1, size=(5, 5))
    write_image(root / "a" / "two", 2, size=(6, 5))
    with pytest.raises(DatasetError, match=r"set dataset\.image_size"):
        read_all(open_image_source(f"folder:{root}"))


def test_folder_fingerprint_follows_the_files(tmp_path):
    root = make_folder(tmp_path / "data", {".": {"a": 2}})
    before = open_image_source(f"folder:{root}").fingerprint
    assert open_image_source(f"folder:{root}").fingerprint == before
    write_image(root / "a" / "extra", 99)
    assert open_image_source(f"folder:{root}").fingerprint != before


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, "is not a folder"),
        (lambda root: root.mkdir(), "no class sub-folders"),
        (lambda root: (root / "a").mkdir(parents=True), "no images"),
    ],
)
def test_folder_problems(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(DatasetError, match=message):
        open_image_source(f"folder:{root}")


def test_tfds_source_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        source = open_image_source("tfds:rock_paper_scissors", image_size=(16, 12))
        chunks, labels = read_all(source, batch_size=3)
    assert source.class_names == ("rock", "paper", "scissors")
    assert source.fingerprint == {
        "kind": "tfds",
        "name": "rock_paper_scissors",
        "version": "3.0.0",
        "splits": ["train", "test"],
    }
    assert [chunk.split for chunk in chunks] == ["train", "train", "test", "test"]
    assert len(labels) == 10 and labels.max() < 3
    assert all(chunk.images.shape[1:] == (16, 12, 3) for chunk in chunks)


def test_unknown_tfds_dataset():
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DatasetError, match="unknown TFDS dataset"):
        open_image_source("tfds:no_such_dataset_here")


def test_describing_the_sklearn_sources_does_not_import_scikit_learn():
    # a feature-cache hit needs only the description: the demo's driver then never loads scikit-learn, SciPy
    # and pandas (351 -> 277 MB peak RSS, BENCHMARKS.md); the fingerprint is the one the import would give
    script = (
        "import sys\n"
        "from evoprune.workers.features.datasets import open_image_source\n"
        "sources = [open_image_source(s, image_size=None, folds=None, resize='bilinear')\n"
        "           for s in ('sklearn:digits', 'sklearn:sample_images')]\n"
        "assert 'sklearn' not in sys.modules, 'scikit-learn was imported'\n"
        "import sklearn\n"
        "assert all(s.fingerprint['sklearn'] == sklearn.__version__ for s in sources)\n"
        "print(sources[1].class_names, sources[1].size)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["('china',", "'flower')", "884"]
