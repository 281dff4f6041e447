"""Evaluator benchmark: reference-style model.fit per mask against the batched evaluator, side by side."""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypedDict

import numpy as np

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.features.feature_set import FeatureSet, Fold, Split

# RPS-sized features: ResNet50's 2048 average-pooled features of rock-paper-scissors (2520 / 372 images).
TRAIN_SAMPLES, TEST_SAMPLES, FEATURES, CLASSES = 2520, 372, 2048, 3
# Weight of the class centre in a sample. Weak enough that accuracies differ between masks (at 0.6 every
# mask scored 1.0, and an agreement figure on such features cannot see drift); timing does not depend on it.
CLASS_SIGNAL = 0.08
# Timed runs of each of the fused and the per-epoch path, alternating: their 0.9-1.1x ratio on a CPU is
# within the noise of one pair on a shared machine.
FUSED_COMPARISON_PAIRS = 5
# Masks the matched agreement check trains one Keras model for (the narrowest, a middle and the widest).
AGREEMENT_MASKS = 3


@dataclass(frozen=True)
class BenchSettings:
    """What one benchmark run compares."""

    masks: int
    epochs: int
    seed: int = 0

    @classmethod
    def preset(cls, quick: bool) -> BenchSettings:
        # quick: under a minute on 2 cores; full: enough epochs that per-model setup stops dominating.
        return cls(masks=6, epochs=4) if quick else cls(masks=12, epochs=20)


def synthetic_rps(
    seed: int, class_signal: float = CLASS_SIGNAL, train_samples: int = TRAIN_SAMPLES
) -> FeatureSet:
    """Class-clustered, non-negative features shaped like ResNet50 avg-pool outputs of RPS.

    Args:
        seed: draws centres, noise, labels and OoD rows.
        class_signal: weight of the class centre against unit-scale noise.
        train_samples: training rows (RPS has 2520; fewer make a cheaper problem of the same width).

    Returns:
        One fold: train, test and as many OoD rows as test rows.
    """
    generator = np.random.default_rng(seed)
    centres = generator.gamma(2.0, 0.25, size=(CLASSES, FEATURES)).astype(np.float32)

    def draw(count: int, label_seed: int) -> Split:
        labels = np.random.default_rng(label_seed).integers(0, CLASSES, count)
        noise = generator.gamma(2.0, 0.25, size=(count, FEATURES)).astype(np.float32)
        return Split((class_signal * centres[labels] + noise).astype(np.float32), labels.astype(np.int64))

    train, test = draw(train_samples, seed + 1), draw(TEST_SAMPLES, seed + 2)
    ood = generator.gamma(2.0, 0.3, size=(TEST_SAMPLES, FEATURES)).astype(np.float32)
    suffix = "" if train_samples == TRAIN_SAMPLES else f"-{train_samples}"
    return FeatureSet(f"synthetic-rps-{seed}{suffix}", CLASSES, (Fold(train, test, ood),))


def reference_masks(count: int, length: int, seed: int) -> np.ndarray:
    """Masks drawn as the reference's initial population: p ~ U(0, 1), round(p·L) random bits on."""
    generator = np.random.default_rng(seed)
    masks = np.zeros((count, length), dtype=bool)
    for row in range(count):
        on = round(generator.uniform() * length)
        masks[row, generator.choice(length, size=on, replace=False)] = True
    return masks


class _PeakRss:
    """Samples this process's resident memory in a thread; psutil comes with ray[default]."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = self.current()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def current(self) -> int:
        return int(self._process.memory_info().rss)

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self.current())

    def __enter__(self) -> _PeakRss:
        self.peak = self.current()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def _objectives(results: list) -> list[tuple[float, float, float | None]]:
    return [(result.accuracy, result.auroc, result.epochs) for result in results]


def _timed(evaluator, masks: np.ndarray) -> tuple[float, list]:
    started = time.perf_counter()
    results = evaluator.evaluate(masks)
    return time.perf_counter() - started, results


class MatchedAgreement(TypedDict):
    """The largest gaps to one Keras model per mask with the same initial weights and batch order."""

    matched_masks: int
    matched_max_abs_accuracy_gap: float
    matched_max_abs_auroc_gap: float
    matched_same_epochs: bool
    matched_accuracy_range: list[float]  # [min, max] of the checked masks' accuracies


class EvaluatorRecord(MatchedAgreement):
    """The benchmark's result record, printed as the last line (the agreement's fields among its own)."""

    masks: int
    epochs: int
    reference_s: float
    batched_s: float
    batched_first_call_s: float
    reference_evals_per_s: float
    batched_evals_per_s: float
    speedup: float
    speedup_including_compile: float
    per_epoch_s: float
    fused_best_s: float
    fused_speedup: float
    fused_median_s: float
    per_epoch_median_s: float
    fused_speedup_median: float
    fused_speedup_pairs: list[float]
    fused_identical: bool
    epochs_per_call: int | None
    groups: int
    executed_tflop: float
    necessary_tflop: float
    achieved_tflops: float
    peak_tflops: float | None
    achieved_over_peak: float | None
    peak_rss_mb: float
    batched_extra_rss_mb: float
    memory_budget_mb: float
    unmatched_mean_abs_accuracy_gap: float
    backend: str
    device: str
    cpu_count: int | None
    machine: str


def matched_agreement(
    features: FeatureSet, config: ExperimentConfig, masks: np.ndarray, batched: list
) -> MatchedAgreement:
    """The largest gaps to one Keras model per mask with the same initial weights and batch order.

    Args:
        features: the benchmark's features.
        config: the benchmark's protocol.
        masks: all benchmark masks; the narrowest, a middle and the widest are checked.
        batched: the batched evaluator's results for all masks.

    Returns:
        Max |Δ accuracy|, max |Δ AUROC|, whether the epochs agree, and the checked masks' accuracy range.
    """
    from evoprune.benchmarks.reference_evaluator import ReferenceEvaluator

    by_density = np.argsort(masks.sum(axis=1))
    chosen = sorted({int(by_density[i]) for i in np.linspace(0, len(masks) - 1, AGREEMENT_MASKS).astype(int)})
    reference = ReferenceEvaluator(features, config, matched=True).evaluate(masks[chosen])
    ours = [batched[i] for i in chosen]
    accuracies = [result.accuracy for result in ours]
    pairs = list(zip(ours, reference, strict=True))
    return {
        "matched_masks": len(chosen),
        "matched_max_abs_accuracy_gap": max(abs(a.accuracy - b.accuracy) for a, b in pairs),
        "matched_max_abs_auroc_gap": max(abs(a.auroc - b.auroc) for a, b in pairs),
        "matched_same_epochs": [a.epochs for a in ours] == [b.epochs for b in reference],
        "matched_accuracy_range": [round(min(accuracies), 4), round(max(accuracies), 4)],
    }


def run_benchmark(
    settings: BenchSettings, log: Callable[[str], None] = print, peak_tflops: float | None = None
) -> EvaluatorRecord:
    """Times both evaluators on the same masks for the same fixed number of epochs.

    Args:
        settings: masks and epochs.
        log: where progress lines go.
        peak_tflops: the device's FP32 peak, for the achieved/peak ratio (None: not reported).

    Returns:
        The result record (also the JSON the command prints last).
    """
    from evoprune.benchmarks.reference_evaluator import ReferenceEvaluator
    from evoprune.workers.backend import backend_name, device_description
    from evoprune.workers.evaluation.evaluator import BatchedEvaluator

    features = synthetic_rps(settings.seed)
    config = ExperimentConfig.model_validate(
        {"training": {"max_epochs": settings.epochs, "early_stopping": {"enabled": False}}}
    )
    masks = reference_masks(settings.masks, FEATURES, settings.seed)
    log(
        f"comparing on {TRAIN_SAMPLES}x{FEATURES} train / {TEST_SAMPLES} test / {TEST_SAMPLES} OoD features, "
        f"{CLASSES} classes: {settings.masks} masks (mean density {masks.mean():.2f}), "
        f"{settings.epochs} epochs each, backend {backend_name()} on {device_description()}"
    )
    batched = BatchedEvaluator(features, config)
    per_epoch = BatchedEvaluator(features, config, epochs_per_call=1)
    # Compiling happens once per worker and shape, then serves a whole run: time it apart.
    compile_and_first_s, _ = _timed(batched, masks)
    _timed(per_epoch, masks)
    with _PeakRss() as memory:
        baseline_rss = memory.current()
        batched_s, batched_results = _timed(batched, masks)
    flops = batched.last_flops
    log(
        f"batched:   {batched_s:.2f} s ({compile_and_first_s:.2f} s for the first, compiling, call), all "
        f"{settings.epochs} epochs in {-(-settings.epochs // batched.epochs_per_call)} call(s) per group, "
        f"{flops.groups} group(s), {flops.executed / batched_s / 1e9:.1f} GFLOP/s executed"
    )
    per_epoch_s, per_epoch_results = _timed(per_epoch, masks)
    # the two paths alternate FUSED_COMPARISON_PAIRS times (the order swapped every pair), so other load on
    # a shared machine biases neither side; the default epochs_per_call of a backend is the faster median
    fused_times, per_epoch_times = [batched_s], [per_epoch_s]
    for pair in range(1, FUSED_COMPARISON_PAIRS):
        for evaluator, times in ((batched, fused_times), (per_epoch, per_epoch_times))[:: 1 - 2 * (pair % 2)]:
            times.append(_timed(evaluator, masks)[0])
    fused_best_s, per_epoch_s = min(fused_times), min(per_epoch_times)
    fused_median_s, per_epoch_median_s = statistics.median(fused_times), statistics.median(per_epoch_times)
    pair_ratios = [slow / fast for slow, fast in zip(per_epoch_times, fused_times, strict=True)]
    fused_identical = _objectives(per_epoch_results) == _objectives(batched_results)
    log(
        f"fused vs per-epoch, {FUSED_COMPARISON_PAIRS} alternating pairs: median {fused_median_s:.2f} s vs "
        f"{per_epoch_median_s:.2f} s (per-epoch/fused per pair "
        f"{min(pair_ratios):.3f}..{max(pair_ratios):.3f}); "
        f"identical objectives: {fused_identical}"
    )
    reference = ReferenceEvaluator(features, config, matched=False)
    started = time.perf_counter()
    reference_results = reference.evaluate(masks)
    reference_s = time.perf_counter() - started
    log(f"reference: {reference_s:.2f} s (one model.fit per mask)")
    weights_per_model = FEATURES * 512 + 512 * CLASSES + CLASSES
    state_mb = settings.masks * 2 * weights_per_model * 4 / 2**20  # weights + momenta
    budget_mb = features.nbytes / 2**20 + state_mb
    accuracy_gap = float(
        np.mean(
            [abs(a.accuracy - b.accuracy) for a, b in zip(batched_results, reference_results, strict=True)]
        )
    )
    agreement = matched_agreement(features, config, masks, batched_results)
    log(f"agreement with one Keras model per mask, same init and batch order: {agreement}")
    achieved_tflops = flops.executed / batched_s / 1e12
    return {
        "masks": settings.masks,
        "epochs": settings.epochs,
        "reference_s": round(reference_s, 3),
        "batched_s": round(batched_s, 3),
        "batched_first_call_s": round(compile_and_first_s, 3),
        "reference_evals_per_s": round(settings.masks / reference_s, 4),
        "batched_evals_per_s": round(settings.masks / batched_s, 4),
        "speedup": round(reference_s / batched_s, 2),
        "speedup_including_compile": round(reference_s / compile_and_first_s, 2),
        "per_epoch_s": round(per_epoch_s, 3),
        "fused_best_s": round(fused_best_s, 3),
        "fused_speedup": round(per_epoch_s / fused_best_s, 3),
        "fused_median_s": round(fused_median_s, 3),
        "per_epoch_median_s": round(per_epoch_median_s, 3),
        "fused_speedup_median": round(per_epoch_median_s / fused_median_s, 3),
        "fused_speedup_pairs": [round(ratio, 3) for ratio in pair_ratios],
        "fused_identical": fused_identical,
        "epochs_per_call": batched.epochs_per_call,
        "groups": flops.groups,
        "executed_tflop": round(flops.executed / 1e12, 4),
        "necessary_tflop": round(flops.necessary / 1e12, 4),
        "achieved_tflops": round(achieved_tflops, 4),
        "peak_tflops": peak_tflops,
        "achieved_over_peak": None if not peak_tflops else round(achieved_tflops / peak_tflops, 4),
        "peak_rss_mb": round(memory.peak / 2**20, 1),
        "batched_extra_rss_mb": round((memory.peak - baseline_rss) / 2**20, 1),
        "memory_budget_mb": round(2 * budget_mb, 1),
        # Keras's own init and shuffling on the reference side: a spread, not an agreement (see matched_*)
        "unmatched_mean_abs_accuracy_gap": round(accuracy_gap, 4),
        **agreement,
        "backend": backend_name(),
        "device": device_description(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


def main(
    quick: bool = False, masks: int | None = None, epochs: int | None = None, peak_tflops: float | None = None
) -> int:
    """Runs the benchmark and prints its JSON record as the last line."""
    settings = BenchSettings.preset(quick)
    if masks is not None or epochs is not None:
        settings = BenchSettings(masks=masks or settings.masks, epochs=epochs or settings.epochs)
    result = run_benchmark(settings, peak_tflops=peak_tflops)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(quick="--quick" in sys.argv))
