"""Backbone feature extraction throughput (images/s) under each Keras backend, as the extraction task runs it.

Run: python -m evoprune.benchmarks.bench_extraction [--backbone mobilenetv2] [--images 256] [--size 224]
     [--batch 32] [--backends tensorflow,jax]
Generated images (seeded uniform noise: throughput does not depend on content) go through
`workers.features.backbones.Backbone.extract` with `weights=None` (random, seeded: no download), batch by
batch as `workers.features.feature_cache` does. Each backend runs in a fresh process (Keras picks its
backend once per process); one warm-up batch (model build, tracing) is excluded and reported separately.
The last line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import TypedDict

import numpy as np

WARMUP_BATCHES = 1


class ExtractionMeasurement(TypedDict):
    """One backbone under one Keras backend: what ran where, and the timings and throughput."""

    backend: str
    device: str
    backbone: str
    features: int
    images: int
    image_size: int
    batch: int
    build_s: float
    warmup_batch_s: float
    seconds: float
    images_per_s: float


def measure(backbone: str, images: int, size: int, batch: int) -> ExtractionMeasurement:
    """Images per second of one backbone in this process, under this process's Keras backend.

    Args:
        backbone: a keras.applications model name (workers.features.backbones).
        images: how many images are timed (after the warm-up batch).
        size: image side in pixels.
        batch: images per extraction batch (the config's backbone.batch_size; default 32).

    Returns:
        The backend, device, timings and throughput.

    """
    import keras

    from evoprune.workers.backend import device_description
    from evoprune.workers.features.backbones import build_backbone

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(images + WARMUP_BATCHES * batch, size, size, 3), dtype=np.uint8)
    started = time.perf_counter()
    extractor = build_backbone(backbone, None, (size, size))
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    extractor.extract(data[: WARMUP_BATCHES * batch], 255.0)
    warmup_s = time.perf_counter() - started
    started = time.perf_counter()
    width = 0
    for start in range(WARMUP_BATCHES * batch, len(data), batch):
        width = extractor.extract(data[start : start + batch], 255.0).shape[1]
    seconds = time.perf_counter() - started
    return {
        "backend": keras.backend.backend(),
        "device": device_description(),
        "backbone": backbone,
        "features": width,
        "images": images,
        "image_size": size,
        "batch": batch,
        "build_s": round(build_s, 3),
        "warmup_batch_s": round(warmup_s, 3),
        "seconds": round(seconds, 3),
        "images_per_s": round(images / seconds, 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure each backend in its own process and print a line each, then the JSON summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: this backend only
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.backbone, args.images, args.size, args.batch)))
        return 0
    results = []
    for backend in args.backends.split(","):
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [sys.executable, "-m", "evoprune.benchmarks.bench_extraction", "--one",
                   f"--backbone={args.backbone}", f"--images={args.images}", f"--size={args.size}",
                   f"--batch={args.batch}"]  # fmt: skip
        completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if completed.returncode != 0:
            print(f"{backend}: failed\n{completed.stderr[-2000:]}", file=sys.stderr)
            results.append({"backend": backend, "error": completed.stderr.strip().splitlines()[-1:]})
            continue
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        results.append(result)
        print(
            f"{backend:10s} {result['device']}: {result['backbone']} ({result['features']} features), "
            f"{result['images']} images of {result['image_size']} px, batch {result['batch']}: "
            f"{result['images_per_s']} images/s (warm-up batch {result['warmup_batch_s']} s)"
        )
    timed = [r for r in results if "images_per_s" in r]
    if len(timed) == 2:
        print(f"{timed[0]['backend']} / {timed[1]['backend']}: "
              f"{timed[0]['images_per_s'] / timed[1]['images_per_s']:.2f}x")  # fmt: skip
    print(json.dumps({"benchmark": "extraction", "cpus": os.cpu_count(), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
