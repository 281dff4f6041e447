"""The demo benchmark's bookkeeping: the alternating order and the medians it reports (no demo is run)."""

from __future__ import annotations

from evoprune.benchmarks.bench_demo import alternating_order, describe


def test_each_version_runs_first_and_second_equally_often() -> None:
    assert alternating_order(3) == ["old", "new", "new", "old", "old", "new"]
    order = alternating_order(4)
    assert order.count("old") == order.count("new") == 4
    assert [order[index] for index in range(0, 8, 2)].count("old") == 2


def test_medians_and_spread() -> None:
    keys = ["wall_s", "driver_peak_rss_mb", "driver_user_cpu_s", "process_tree_peak_rss_mb"]
    keys.append("experiment_wall_s")
    runs = [dict.fromkeys(keys, value) for value in (3.0, 1.0, 2.0)]
    assert describe(runs)["wall_s"] == {"median": 2.0, "min": 1.0, "max": 3.0}
