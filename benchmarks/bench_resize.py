"""How much the resize interpolation (dataset.resize: bilinear or nearest) changes the extracted features.

Run: python -m evoprune.benchmarks.bench_resize [--images 40] [--size 64] [--backbones pixels resnet50]
Writes a folder of generated images of random sizes (smooth backgrounds, shapes, mild noise; every fourth
one greyscale, as photo datasets hold a few), extracts the features of every backbone under both choices
(CNNs with random seeded weights: no download; ResNet50's are not degenerate at 64×64, MobileNet's
pool to values near 1e-20), and compares them per backbone: the mean absolute
difference relative to the mean magnitude, the largest difference, and the share of values that differ.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import TypedDict

import numpy as np
from PIL import Image, ImageDraw

from evoprune.shared.config import BackboneConfig
from evoprune.workers.features.feature_cache import source_features

MIN_SIDE = 33
MAX_SIDE = 300
NOISE_SIGMA = 8.0
SHAPES_PER_IMAGE = 3


def _image(rng: np.random.Generator) -> Image.Image:
    height, width = (int(side) for side in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    start, end = rng.uniform(0, 255, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, width)[None, :, None]
    pixels = np.broadcast_to(start + ramp * (end - start), (height, width, 3))
    picture = Image.fromarray(pixels.astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(SHAPES_PER_IMAGE):
        left, right = sorted(int(x) for x in rng.integers(0, width, size=2))
        top, bottom = sorted(int(y) for y in rng.integers(0, height, size=2))
        colour = tuple(int(v) for v in rng.integers(0, 256, size=3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((left, top, right, bottom), fill=colour)
    noisy = np.asarray(picture, dtype=np.float64) + rng.normal(0.0, NOISE_SIGMA, size=(height, width, 3))
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def write_folder(root: Path, images: int, seed: int) -> list[tuple[int, int]]:
    """Write `images` generated images into two class folders; return their (height, width)."""
    rng = np.random.default_rng(seed)
    sizes = []
    for index in range(images):
        folder = root / f"class{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        picture = _image(rng)
        if index % 4 == 3:
            picture = picture.convert("L")
        picture.save(folder / f"{index:03d}.png")
        sizes.append((picture.height, picture.width))
    return sizes


def compare(bilinear: np.ndarray, nearest: np.ndarray) -> dict[str, float]:
    """The differences between two feature matrices of the same samples.

    Args:
        bilinear: (N, D) features under bilinear resizing.
        nearest: (N, D) features under nearest resizing.

    Returns:
        `relative_mean_abs` (mean |difference| / mean |bilinear value|), `max_abs`, `mean_abs`,
        `mean_magnitude`, `share_differing` (of all N·D values) and `features` (D).

    """
    difference = np.abs(nearest.astype(np.float64) - bilinear.astype(np.float64))
    magnitude = float(np.abs(bilinear.astype(np.float64)).mean())
    return {
        "features": int(bilinear.shape[1]),
        "mean_abs": float(difference.mean()),
        "mean_magnitude": magnitude,
        "relative_mean_abs": float(difference.mean() / magnitude) if magnitude else float("nan"),
        "max_abs": float(difference.max()),
        "share_differing": float(np.mean(nearest != bilinear)),
    }


class ResizeComparison(TypedDict):
    """The JSON line: the generated images, and per backbone the differences (`compare`) and seconds."""

    benchmark: str
    images: int
    image_size: list[int]
    source_sides: list[int]  # the smallest and largest side of the generated images
    seed: int
    backbones: dict[str, dict[str, float]]


def measure(images: int, size: int, backbones: list[str], seed: int) -> ResizeComparison:
    """Extract every backbone's features of one generated folder under both choices and compare them."""
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-resize-") as scratch:
        root = Path(scratch)
        sizes = write_folder(root / "images", images, seed)
        for name in backbones:
            backbone = BackboneConfig(name=name, weights=None, batch_size=images)
            features = {}
            started = time.perf_counter()
            for resize in ("bilinear", "nearest"):
                table, _ = source_features(
                    f"folder:{root / 'images'}",
                    backbone=backbone,
                    image_size=(size, size),
                    cache_dir=root / "cache",
                    progress=False,
                    resize=resize,
                )
                features[resize] = table.features
            results[name] = compare(features["bilinear"], features["nearest"]) | {
                "seconds": round(time.perf_counter() - started, 2)
            }
    sides = np.array(sizes)
    return {
        "benchmark": "resize",
        "images": images,
        "image_size": [size, size],
        "source_sides": [int(sides.min()), int(sides.max())],
        "seed": seed,
        "backbones": results,
    }


def main(argv: list[str] | None = None) -> None:
    """Measure and print the comparison; the last line is one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--size", type=int, default=64, help="the square side images are resized to")
    parser.add_argument("--backbones", nargs="+", default=["pixels", "resnet50"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    result = measure(args.images, args.size, args.backbones, args.seed)
    low, high = result["source_sides"]
    print(
        f"{args.images} generated images, sides {low}..{high} px, resized to {args.size}×{args.size}: "
        "features under nearest compared with bilinear"
    )
    for name, row in result["backbones"].items():
        print(
            f"  {name:>12} ({row['features']} features): "
            f"mean |Δ| / mean |x| = {row['relative_mean_abs']:.3f}, "
            f"max |Δ| = {row['max_abs']:.4g} (mean |x| = {row['mean_magnitude']:.4g}), "
            f"values that differ: {100 * row['share_differing']:.1f} %"
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
