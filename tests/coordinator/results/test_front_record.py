"""A front row's typed record is the mapping it reads as: the same keys, values and order."""

import pytest

from evoprune.coordinator.results.fronts import FrontRow

BASE = {"run": -1, "mask": "0f", "mask_length": 8, "accuracy": 0.9, "active_fraction": 0.5, "auroc": 0.8}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"kind": "population"},
        {"kind": "archive", "test_accuracy": 0.85, "test_auroc": 0.75},
        {"kind": "population", "feasible": False},
        {"kind": "archive", "test_accuracy": 0.85, "test_auroc": 0.75, "feasible": True},
    ],
)
def test_record_is_the_rows_mapping_in_column_order(extra):
    row = FrontRow.of(BASE | extra)
    assert list(row.record().items()) == list(row.items()) == list((BASE | extra).items())
