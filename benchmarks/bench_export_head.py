"""Exported head size and CPU latency: the full dense head against the physically pruned one.

Run: python -m evoprune.benchmarks.bench_export_head [--inputs 2048] [--hidden 512] [--classes 3]
     [--active 0.23]
The defaults are an RPS-size head on ResNet50 features with the paper's best-accuracy share of active
inputs. Weights are the evaluation seed's initial ones (latency does not depend on their values). The last
line printed is one JSON object with every number.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Literal, TypedDict

import numpy as np

from evoprune.shared.config import HeadConfig
from evoprune.workers.evaluation.head_layout import active_indices, head_shape, initial_weights
from evoprune.workers.export.model import full_kept, head_cost, head_latency_ms, pruned_widths
from evoprune.workers.export.report import ByBatch


class HeadMeasurement(TypedDict):
    """One head before and after pruning; each figure maps `before` and `after` to its value."""

    mode: str
    active_fraction: float
    widths: dict[str, list[int]]
    parameters: dict[str, int]
    flops: dict[str, int]
    cpu_latency_ms: dict[str, ByBatch[float]]  # before/after → single_ms, batched_ms
    speedup: dict[str, float]  # single_ms, batched_ms → before / after


def compact_weights(weights: list[np.ndarray], kept: list[np.ndarray]) -> list[np.ndarray]:
    """The full head's weights cut to the kept rows and columns (one hidden layer, no hidden bias)."""
    return [weights[0][np.ix_(kept[0], kept[1])], weights[1][kept[1]], weights[2]]


def measure(
    mode: Literal["features", "neurons"], inputs: int, hidden: int, classes: int, active: float
) -> HeadMeasurement:
    """Size, FLOPs and CPU latency per image of one head before and after pruning.

    Args:
        mode: `features` (the mask selects inputs) or `neurons` (hidden units).
        inputs: feature width.
        hidden: hidden units.
        classes: output classes.
        active: share of mask bits switched on (seeded draw).

    Returns:
        The numbers, before and after.

    """
    shape = head_shape(HeadConfig(mode=mode, layers=(hidden,)), inputs, classes)
    mask = np.random.default_rng(0).random(shape.mask_length) < active
    kept = active_indices(shape, mask)
    before = head_cost((*shape.widths, classes), shape.hidden_bias)
    after = head_cost(pruned_widths(shape, kept), shape.hidden_bias)
    latency_before = head_latency_ms(shape, full_kept(shape), None)
    latency_after = head_latency_ms(shape, kept, compact_weights(initial_weights(shape, 0), kept))
    return {
        "mode": mode,
        "active_fraction": float(mask.mean()),
        "widths": {"before": list(before.widths), "after": list(after.widths)},
        "parameters": {"before": before.parameters, "after": after.parameters},
        "flops": {"before": before.flops, "after": after.flops},
        "cpu_latency_ms": {"before": latency_before, "after": latency_after},
        "speedup": {key: latency_before[key] / latency_after[key] for key in ("single_ms", "batched_ms")},
    }


def main() -> None:
    """Measure both modes and print a line each, then the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=2048)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--active", type=float, default=0.23)
    args = parser.parse_args()
    modes: tuple[Literal["features", "neurons"], ...] = ("features", "neurons")
    results = [measure(mode, args.inputs, args.hidden, args.classes, args.active) for mode in modes]
    for result in results:
        latency = result["cpu_latency_ms"]
        print(
            f"{result['mode']:8s} {result['widths']['before']} -> {result['widths']['after']}: "
            f"parameters {result['parameters']['before']:,} -> {result['parameters']['after']:,}, "
            f"one image {latency['before']['single_ms']:.3f} -> {latency['after']['single_ms']:.3f} ms "
            f"({result['speedup']['single_ms']:.2f}x), "
            f"batched {latency['before']['batched_ms'] * 1e3:.2f} -> "
            f"{latency['after']['batched_ms'] * 1e3:.2f} us/image ({result['speedup']['batched_ms']:.2f}x)"
        )
    print(json.dumps({"benchmark": "export_head", "cpus": os.cpu_count(), "results": results}))


if __name__ == "__main__":
    main()
