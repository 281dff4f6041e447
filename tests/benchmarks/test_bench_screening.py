"""The screening benchmark end to end at a tiny size: it runs, accounts and refuses bad rules by name."""

from __future__ import annotations

import json

import pytest

from evoprune.benchmarks import bench_screening


def test_a_tiny_comparison_accounts_epochs_and_hypervolume(capsys) -> None:
    argv = [
        "--problems", "rps", "--rps-train", "32", "--seeds", "1", "--population", "4",
        "--max-evaluations", "8", "--max-epochs", "6", "--rules", "0.5:0:0:0,0.5:0:0:1",
    ]  # fmt: skip
    assert bench_screening.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])[0]
    modes = result["modes"]
    full = modes["full"]
    assert full["screened_out"] == 0 and full["epoch_reduction"] == 1.0
    assert full["epochs"] == sum(run["epochs"] for run in full["per_seed"]) > 0
    # min_gain 1 screens out every offspring (none can double the front's volume): 4 trained in full, 4 at 3
    everything = modes["budget 0.5, rank 0, margin 0, gain 1"]
    assert everything["screened_out"] == 4 and everything["evaluations"] == 8
    assert everything["epochs"] <= full["epochs"] and everything["epoch_reduction"] >= 1.0
    assert 0 < everything["hypervolume_ratio_archive"] <= 1.0 + 1e-12


@pytest.mark.parametrize(
    ("rules", "message"),
    [("0.1:0:0", "BUDGET:MAX_RANK:MARGIN:MIN_GAIN"), ("1.5:0:0:0", "less than 1"), ("0.1:x:0:0", "invalid")],
)
def test_a_bad_rule_is_named(rules: str, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        bench_screening.main(["--rules", rules])
