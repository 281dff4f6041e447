"""Image sources (sklearn demos, TFDS datasets, class folders), described cheaply and read in chunks."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

SPLITS = ("train", "validation", "test")
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
# Sample photos are cut into squares of this many pixels and averaged down to the digits' 8×8 grid.
SAMPLE_PATCH_PIXELS = 24
DIGITS_SIDE = 8
DIGITS_LEVELS = 16
# How images are resized on the way to the backbone (config `dataset.resize`); "nearest" is what Keras 2's
# image loader did after converting to RGB, and so what the reference's backbone saw.
DEFAULT_RESIZE = "bilinear"
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "nearest": Image.Resampling.NEAREST}

_PARTITION = re.compile(r"^partition(\d+)$")
logger = logging.getLogger(__name__)


class DatasetError(ValueError):
    """Input data that cannot be used; the message names the file, column or source at fault."""


@dataclass(frozen=True)
class Chunk:
    """A batch of images of one split (and fold), values in [0, the source's pixel_max]."""

    images: np.ndarray  # (n, H, W, C)
    labels: np.ndarray  # (n,) int64
    split: str
    fold: int | None = None


@dataclass(frozen=True)
class ImageSource:
    """A dataset described without reading its images: enough to fingerprint it and to read it later."""

    spec: str
    class_names: tuple[str, ...]
    pixel_max: float
    fingerprint: dict[str, Any]
    size: int | None
    reader: Callable[[int], Iterator[Chunk]]

    def chunks(self, batch_size: int) -> Iterator[Chunk]:
        """Read the images.

        Args:
            batch_size: images per chunk at most.

        Returns:
            An iterator over chunks; a chunk never mixes splits or folds.

        """
        return self.reader(batch_size)


def resampling(resize: str) -> Image.Resampling:
    """The PIL filter of a `dataset.resize` choice.

    Args:
        resize: `bilinear` or `nearest`.

    Returns:
        The filter.

    Raises:
        DatasetError: an unknown choice.

    """
    if resize not in RESAMPLING:
        raise DatasetError(f"dataset.resize is {resize!r}; expected one of {', '.join(RESAMPLING)}")
    return RESAMPLING[resize]


def open_image_source(
    spec: str,
    *,
    image_size: tuple[int, int] | None = None,
    folds: int | None = None,
    resize: str = DEFAULT_RESIZE,
) -> ImageSource:
    """Describe an image source given as `KIND:REST` (sklearn, tfds or folder).

    Args:
        spec: the source string, e.g. `sklearn:digits`, `tfds:rock_paper_scissors`, `folder:/data/coral`.
        image_size: (height, width) every image is resized to; None keeps the source's size.
        folds: the expected number of partitions of a k-fold folder; None accepts what is found.
        resize: the interpolation of that resize, `bilinear` or `nearest` (config `dataset.resize`).

    Returns:
        The source; its images are read only when `chunks` is iterated.

    Raises:
        DatasetError: unknown source or resize, missing folder, no images, or a partition count mismatch.

    """
    kind, _, rest = spec.partition(":")
    method = resampling(resize)
    if kind == "sklearn":
        if rest == "digits":
            return _digits_source(spec, image_size, method)
        if rest == "sample_images":
            return _sample_images_source(spec, image_size, method)
        raise DatasetError(f"{spec}: unknown sklearn source (known: sklearn:digits, sklearn:sample_images)")
    if kind == "tfds":
        return _tfds_source(spec, rest, image_size, method)
    if kind == "folder":
        return _folder_source(spec, Path(rest).expanduser(), image_size, folds, method)
    raise DatasetError(f"{spec}: not an image source (expected sklearn:, tfds: or folder:)")


def _array_reader(
    images: Callable[[], tuple[np.ndarray, np.ndarray]], split: str
) -> Callable[[int], Iterator[Chunk]]:
    def read(batch_size: int) -> Iterator[Chunk]:
        pixels, labels = images()
        for start in range(0, len(labels), batch_size):
            stop = start + batch_size
            yield Chunk(pixels[start:stop], labels[start:stop], split)

    return read


def _resize_gray(
    images: np.ndarray, image_size: tuple[int, int] | None, method: Image.Resampling
) -> np.ndarray:
    """Resize (n, H, W) float images; PIL's float mode keeps the 0..16 scale unquantised."""
    if image_size is None or images.shape[1:3] == tuple(image_size):
        return images[..., None]
    height, width = image_size
    resized = [
        np.asarray(Image.fromarray(image, mode="F").resize((width, height), method))
        for image in images.astype(np.float32)
    ]
    return np.stack(resized)[..., None]


def _sklearn_fingerprint(name: str) -> dict[str, Any]:
    # the installed version without importing scikit-learn: a cache hit then never loads it (with SciPy and
    # pandas, about 40 MB of the demo driver's memory); the string is the one `sklearn.__version__` gives
    return {"kind": "sklearn", "name": name, "sklearn": importlib.metadata.version("scikit-learn")}


def _digits_source(spec: str, image_size: tuple[int, int] | None, method: Image.Resampling) -> ImageSource:
    def load() -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = _resize_gray(bunch.images.astype(np.float32), image_size, method)
        return images, bunch.target.astype(np.int64)

    return ImageSource(
        spec=spec,
        class_names=tuple(str(digit) for digit in range(10)),
        pixel_max=float(DIGITS_LEVELS),
        fingerprint=_sklearn_fingerprint("digits"),
        size=1797,
        reader=_array_reader(load, "train"),
    )


def photo_patches(photo: np.ndarray) -> np.ndarray:
    """Cut an RGB photo into the digits' input space: gray 8×8 patches quantised to 0..16.

    Args:
        photo: (H, W, 3) uint8.

    Returns:
        (n, 8, 8) float32 patches, row-major over the photo, values integers in 0..16.

    """
    gray = photo.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    rows, cols = gray.shape[0] // SAMPLE_PATCH_PIXELS, gray.shape[1] // SAMPLE_PATCH_PIXELS
    block = SAMPLE_PATCH_PIXELS // DIGITS_SIDE
    cropped = gray[: rows * SAMPLE_PATCH_PIXELS, : cols * SAMPLE_PATCH_PIXELS]
    # Axes: patch row, cell row, pixel row, patch col, cell col, pixel col; averaging the pixel axes
    # downsamples each patch to the 8×8 grid.
    cells = cropped.reshape(rows, DIGITS_SIDE, block, cols, DIGITS_SIDE, block).mean(axis=(2, 5))
    patches = cells.transpose(0, 2, 1, 3).reshape(rows * cols, DIGITS_SIDE, DIGITS_SIDE)
    return np.rint(patches / 255.0 * DIGITS_LEVELS).astype(np.float32)


def _sample_images_source(
    spec: str, image_size: tuple[int, int] | None, method: Image.Resampling
) -> ImageSource:
    # described from the photos' file headers, as load_sample_images lists them (sorted *.jpg beside
    # sklearn/datasets), without importing scikit-learn: a feature-cache hit then never loads it
    photos = _sample_photo_paths()
    names = tuple(path.stem for path in photos)

    def load() -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_sample_images

        bunch = load_sample_images()
        if tuple(Path(filename).stem for filename in bunch.filenames) != names:
            raise DatasetError(f"{spec}: scikit-learn's sample photos changed while being read")
        patches = [photo_patches(photo) for photo in bunch.images]
        labels = np.concatenate([np.full(len(p), index, np.int64) for index, p in enumerate(patches)])
        return _resize_gray(np.concatenate(patches), image_size, method), labels

    side = SAMPLE_PATCH_PIXELS
    size = 0
    for path in photos:
        with Image.open(path) as photo:  # reads the header only
            width, height = photo.size
        size += (height // side) * (width // side)
    fingerprint = _sklearn_fingerprint("sample_images") | {"photos": list(names), "patch": side}
    return ImageSource(spec, names, float(DIGITS_LEVELS), fingerprint, size, _array_reader(load, "train"))


def _sample_photo_paths() -> list[Path]:
    """scikit-learn's sample photos, found without importing it."""
    found = importlib.util.find_spec("sklearn")
    if found is None or found.origin is None:
        raise DatasetError("sklearn:sample_images needs scikit-learn (pip install scikit-learn)")
    folder = Path(found.origin).parent / "datasets" / "images"
    photos = sorted(path for path in folder.glob("*.jpg") if path.is_file()) if folder.is_dir() else []
    if not photos:
        raise DatasetError(f"sklearn:sample_images: no photos in {folder}")
    return photos


def _fit_image(
    image: np.ndarray, image_size: tuple[int, int] | None, method: Image.Resampling, origin: str
) -> np.ndarray:
    """Resize one decoded image, keeping its channels.

    Nearest picks whole pixels, so resizing before the backbone's grey-to-RGB / drop-alpha step gives the
    same pixels as Keras 2's convert-then-resize.
    """
    if image.ndim == 2:
        image = image[..., None]
    if image_size is None or image.shape[:2] == tuple(image_size):
        return image
    height, width = image_size
    channels = image.shape[2]
    if channels not in (1, 3, 4) or image.dtype != np.uint8:
        raise DatasetError(f"{origin}: cannot resize a {image.dtype} image with {channels} channels")
    picture = Image.fromarray(image[..., 0] if channels == 1 else image)
    resized = np.asarray(picture.resize((width, height), method))
    return resized.reshape(height, width, channels)


def _stack(images: list[np.ndarray], origins: list[str]) -> np.ndarray:
    first = images[0].shape
    for image, origin in zip(images, origins, strict=True):
        if image.shape != first:
            raise DatasetError(
                f"{origin}: image shape {image.shape} differs from {origins[0]} {first}; "
                "set dataset.image_size"
            )
    return np.stack(images)


def _tfds_source(
    spec: str, name: str, image_size: tuple[int, int] | None, method: Image.Resampling
) -> ImageSource:
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name)
    except Exception as error:  # tfds raises its own DatasetNotFoundError and plain errors for bad names
        raise DatasetError(f"{spec}: unknown TFDS dataset ({error})") from None
    if not builder.info.splits:
        # Split names are recorded when the dataset is prepared; preparing it first (a no-op when it is
        # already there, and under tfds.testing.mock_data) lets a train-only dataset be recognised.
        try:
            builder.download_and_prepare()
        except Exception as error:  # network, disk and checksum failures all surface here
            raise DatasetError(f"{spec}: cannot download or prepare the TFDS dataset ({error})") from None
    info = builder.info
    if not info.supervised_keys:
        raise DatasetError(f"{spec}: the dataset has no (image, label) supervised keys")
    label_key = info.supervised_keys[1]
    names = getattr(info.features[label_key], "names", None)
    if not names:
        raise DatasetError(f"{spec}: the label feature {label_key!r} is not a class label")
    class_names = tuple(names)
    known = list(info.splits.keys())
    # Split names stay unknown when only the dataset's code is available (under tfds.testing.mock_data);
    # then the two usual splits are read.
    splits = [split for split in SPLITS if split in known] if known else ["train", "test"]
    if known and not splits:
        raise DatasetError(f"{spec}: none of the splits {known} is named train, validation or test")
    size = sum(info.splits[split].num_examples for split in splits) if known else None
    fingerprint = {"kind": "tfds", "name": name, "version": str(info.version), "splits": splits}

    def read(batch_size: int) -> Iterator[Chunk]:
        for split in splits:
            dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
            images: list[np.ndarray] = []
            labels: list[int] = []
            origins: list[str] = []
            for index, (image, label) in enumerate(tfds.as_numpy(dataset)):
                origin = f"{spec} {split}[{index}]"
                images.append(_fit_image(np.asarray(image), image_size, method, origin))
                labels.append(int(label))
                origins.append(origin)
                if len(images) == batch_size:
                    yield Chunk(_stack(images, origins), np.array(labels, np.int64), split)
                    images, labels, origins = [], [], []
            if images:
                yield Chunk(_stack(images, origins), np.array(labels, np.int64), split)

    return ImageSource(spec, class_names, 255.0, fingerprint, size, read)


@dataclass(frozen=True)
class _Part:
    split: str
    fold: int | None
    directory: Path


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def _folder_parts(spec: str, root: Path, folds: int | None) -> list[_Part]:
    if not root.is_dir():
        raise DatasetError(f"{spec}: {root} is not a folder")
    children = {p.name: p for p in _class_dirs(root)}
    partitions = {int(m.group(1)): p for name, p in children.items() if (m := _PARTITION.match(name))}
    if partitions:
        count = len(partitions)
        if sorted(partitions) != list(range(count)):
            raise DatasetError(f"{spec}: partitions must be numbered 0..k-1, found {sorted(partitions)}")
        if folds is not None and folds != count:
            raise DatasetError(f"{spec}: dataset.folds is {folds} but {count} partition folders exist")
        return [_Part("train", index, partitions[index]) for index in range(count)]
    if "train" in children:
        return [_Part(split, None, children[split]) for split in SPLITS if split in children]
    return [_Part("train", None, root)]


def _folder_files(spec: str, parts: list[_Part]) -> tuple[tuple[str, ...], list[tuple[_Part, str, Path]]]:
    class_names = sorted({d.name for part in parts for d in _class_dirs(part.directory)})
    if not class_names:
        raise DatasetError(f"{spec}: no class sub-folders found")
    files = []
    for part in parts:
        for class_dir in _class_dirs(part.directory):
            for path in sorted(class_dir.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                    files.append((part, class_dir.name, path))
    if not files:
        raise DatasetError(f"{spec}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    return tuple(class_names), files


def _read_image(path: Path, image_size: tuple[int, int] | None, method: Image.Resampling) -> np.ndarray:
    try:
        with Image.open(path) as picture:
            # RGB first, then resize: Keras 2's loader's order; PIL resizes a palette image by nearest
            # whatever filter is asked, so this order is also what lets bilinear reach palette images
            rgb = picture.convert("RGB")
            if image_size is not None:
                rgb = rgb.resize((image_size[1], image_size[0]), method)
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise DatasetError(f"cannot read image {path}: {error}") from None


def _folder_source(
    spec: str,
    root: Path,
    image_size: tuple[int, int] | None,
    folds: int | None,
    method: Image.Resampling,
) -> ImageSource:
    parts = _folder_parts(spec, root, folds)
    class_names, files = _folder_files(spec, parts)
    label_of = {name: index for index, name in enumerate(class_names)}
    digest = hashlib.sha256()
    for _, _, path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    fingerprint = {"kind": "folder", "files": len(files), "listing_sha256": digest.hexdigest()}

    def read(batch_size: int) -> Iterator[Chunk]:
        for part in parts:
            members = [(label_of[name], path) for owner, name, path in files if owner is part]
            for start in range(0, len(members), batch_size):
                batch = members[start : start + batch_size]
                images = [_read_image(path, image_size, method) for _, path in batch]
                origins = [str(path) for _, path in batch]
                labels = np.array([label for label, _ in batch], np.int64)
                yield Chunk(_stack(images, origins), labels, part.split, part.fold)

    return ImageSource(spec, class_names, 255.0, fingerprint, len(files), read)
