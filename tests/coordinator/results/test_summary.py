"""summary.json's typed halves agree: the dataclass's fields and the document's keys, with their types."""

from __future__ import annotations

import typing
from dataclasses import fields

from evoprune.coordinator.results.summary import (
    FrontSummary,
    FrontSummaryDocument,
    RunSummary,
    RunSummaryDocument,
)

# the keys of summaries written before population fronts were kept, which only `from_dict` reads
LEGACY_KEYS = {"hypervolume", "front_size"}


def test_the_document_has_each_field_of_the_summary_with_its_type():
    document = typing.get_type_hints(FrontSummaryDocument)
    summary = typing.get_type_hints(FrontSummary)
    assert {name: document[name] for name in summary} == summary
    assert set(document) - set(summary) == LEGACY_KEYS


def test_a_run_document_adds_run_and_seed():
    run_keys = {item.name for item in fields(RunSummary)} - {"front"}
    added = set(typing.get_type_hints(RunSummaryDocument)) - set(typing.get_type_hints(FrontSummaryDocument))
    assert added == run_keys == {"run", "seed"}


def test_a_summary_survives_its_document():
    summary = FrontSummary(0.5, 0.6, 10, 8, 1, 40.0, 2, 3, 4, 0.9, feasible=5, best_feasible_accuracy=0.8)
    assert FrontSummary.from_dict(summary.to_dict()) == summary
    plain = FrontSummary(0.5, 0.6, 10, 8, 1, None, 2, 3, 4, None)
    assert "feasible" not in plain.to_dict()
    assert FrontSummary.from_dict(plain.to_dict()) == plain
