"""The typed journal and Parquet records carry exactly the evaluation row's fields (one list, held equal)."""

import dataclasses

from evoprune.coordinator.results.writer import COLUMN_TYPES, FEASIBLE_COLUMN, EvaluationRecord
from evoprune.shared.evaluation_row import EvaluationRow, EvaluationRowRecord

ROW_FIELDS = [item.name for item in dataclasses.fields(EvaluationRow)]


def test_the_row_record_has_the_rows_fields_in_their_order():
    assert list(EvaluationRowRecord.__annotations__) == ROW_FIELDS


def test_the_writers_record_is_the_row_record_and_feasible():
    assert EvaluationRecord.__required_keys__ == frozenset()
    assert EvaluationRecord.__optional_keys__ == frozenset([*ROW_FIELDS, FEASIBLE_COLUMN])


def test_every_column_written_but_the_front_kind_is_a_record_key():
    assert set(COLUMN_TYPES) - {"kind"} <= EvaluationRecord.__optional_keys__
