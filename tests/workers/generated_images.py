"""Generated image folders for tests that need a real CNN backbone: shapes by class, noise as OoD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circles", "squares", "stripes")
OOD_CLASSES = ("noise", "gradients")


def _shape_image(kind: str, side: int, rng: np.random.Generator) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(0, 90, size=3))
    image = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(image)
    colour = tuple(int(v) for v in rng.integers(140, 256, size=3))
    size = int(rng.integers(side // 4, side // 2))
    left, top = (int(v) for v in rng.integers(0, side - size, size=2))
    if kind == "circles":
        draw.ellipse((left, top, left + size, top + size), fill=colour)
    elif kind == "squares":
        draw.rectangle((left, top, left + size, top + size), fill=colour)
    else:
        period = int(rng.integers(6, 14))
        for y in range(int(rng.integers(0, period)), side, period):
            draw.rectangle((0, y, side, y + period // 2), fill=colour)
    return image


def _ood_image(kind: str, side: int, rng: np.random.Generator) -> Image.Image:
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8))
    ramp = np.linspace(0, 255, side)
    start, end = rng.integers(0, 256, size=(2, 3))
    pixels = np.outer(ramp / 255.0, end - start)[None, :, :] + start
    return Image.fromarray(np.broadcast_to(pixels, (side, side, 3)).astype(np.uint8))


def write_shapes_dataset(root: Path, side: int = 96, train: int = 16, test: int = 8, seed: int = 0) -> Path:
    """A folder dataset (train/ and test/ with one sub-folder per class) of coloured shapes."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for kind in CLASSES:
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                _shape_image(kind, side, rng).save(folder / f"{index:03d}.png")
    return root


def write_ood_folder(root: Path, side: int = 96, count: int = 12, seed: int = 1) -> Path:
    """An OoD folder: random noise and colour gradients, one sub-folder each."""
    rng = np.random.default_rng(seed)
    for kind in OOD_CLASSES:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            _ood_image(kind, side, rng).save(folder / f"{index:03d}.png")
    return root


def session_shapes(base: Path) -> tuple[Path, Path, Path]:
    """The shapes dataset, its OoD folder and a feature cache under `base`, made once per test session.

    Args:
        base: the session's base temporary folder (tmp_path_factory.getbasetemp()), so that every test
            module shares one dataset and so one feature extraction.

    Returns:
        (dataset folder, OoD folder, feature cache folder).

    """
    root = base / "shapes-dataset"
    data, ood, cache = root / "data", root / "ood", root / "cache"
    if not root.exists():
        write_shapes_dataset(data)
        write_ood_folder(ood)
    return data, ood, cache


def shapes_config_data(base: Path, search: dict | None = None, **head: object) -> dict:
    """An experiment on the shapes with a real CNN backbone (MobileNetV2, random weights, 96×96)."""
    data, ood, cache = session_shapes(base)
    return {
        "name": "shapes",
        "dataset": {"source": f"folder:{data}"},
        "ood": [{"source": f"folder:{ood}"}],
        "backbone": {"name": "mobilenetv2", "weights": None},
        "head": {"layers": [32], **head},
        "training": {"max_epochs": 3},
        "search": {"population_size": 6, "max_evaluations": 10, "runs": 2, "seed": 0, **(search or {})},
        "cache_dir": str(cache),
    }


MIXED_MODES = ("RGB", "L", "P", "RGBA")


def write_mixed_mode_folder(root: Path, per_mode: int = 3, seed: int = 2) -> Path:
    """A class folder per PIL mode (RGB, L, P, RGBA) of noise images of odd, random sizes.

    Noise makes every interpolation choice visible; odd sizes make the resize ratios awkward (both
    shrinking and enlarging). Palette images are RGB noise quantised to 64 colours; RGBA has random alpha.
    """
    rng = np.random.default_rng(seed)
    for mode in MIXED_MODES:
        folder = root / mode.lower()
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_mode):
            height, width = (int(side) for side in rng.integers(5, 70, size=2) | 1)
            if mode == "L":
                image = Image.fromarray(rng.integers(0, 256, size=(height, width), dtype=np.uint8))
            elif mode == "RGBA":
                image = Image.fromarray(rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8))
            else:
                image = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
                if mode == "P":
                    image = image.quantize(colors=64)
            image.save(folder / f"{index:03d}.png")
    return root
