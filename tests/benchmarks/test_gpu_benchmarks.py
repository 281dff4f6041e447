"""The GPU benchmarks run end to end at tiny sizes on a CPU under JAX, before any device session."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TINY_SEARCH = [
    *("--runs", "2", "--max-evaluations", "8", "--population", "4", "--max-epochs", "3"),
    *("--steady-rounds", "1", "--features", "256", "--peak-tflops", "67"),
]


def _run_module(module: str, arguments: list[str]) -> dict:
    environment = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    completed = subprocess.run(
        [sys.executable, "-m", module, *arguments],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.jax
def test_bounded_search_measures_first_and_steady_rounds_and_projects() -> None:
    pytest.importorskip("jax")
    record = _run_module("evoprune.benchmarks.bench_gpu_search", TINY_SEARCH)
    assert record["backend"] == "jax"
    assert record["first_round_masks"] == 8  # 2 runs × population 4 in one call
    assert record["steady_rounds_measured"] == 1
    assert record["steady_rounds_total"] == 2  # (8 - 4) evaluations / 2 offspring
    assert record["projected_from_rounds_s"] > record["first_round_s"] > 0
    assert record["first_round_tflops"] > 0 and record["first_round_over_peak"] is not None


@pytest.mark.jax
def test_steady_round_timing_compares_fused_and_per_epoch() -> None:
    pytest.importorskip("jax")
    record = _run_module("evoprune.benchmarks.bench_round", ["--masks", "2", "--epochs", "2"])
    assert record["fused_identical"] is True
    assert record["fused_us_per_step"] > 0 and record["per_epoch_us_per_step"] > 0
