"""The service's analysis status: what the status file and the actor's presence say, and how a run reports."""

from __future__ import annotations

import json

import pytest

from evoprune.coordinator.results_dir import ResultsLayout
from evoprune.coordinator.service.analysis_launch import AnalysisSpec, run_analysis
from evoprune.coordinator.service.analysis_status import (
    LOST_AFTER_S,
    analysis_state,
    mark_requested,
    read_status,
    restore_status,
)

NOW = 1_000_000.0


def never_asked() -> bool:
    raise AssertionError("the actor's presence was asked about without need")


def test_without_a_status_file_the_analysis_folder_decides(tmp_path):
    assert analysis_state(tmp_path, never_asked).status == "none"
    (tmp_path / "analysis").mkdir()
    assert analysis_state(tmp_path, never_asked).status == "none"
    (tmp_path / "analysis" / "analysis.json").write_text("{}")
    assert analysis_state(tmp_path, never_asked).status == "succeeded"
    # an unreadable or foreign status file is no status file
    for text in ("{not json", '["running"]', '{"status": "dancing"}'):
        ResultsLayout(tmp_path).analysis_status.write_text(text)
        assert read_status(tmp_path) is None
        assert analysis_state(tmp_path, never_asked).status == "succeeded"


def test_a_running_analysis_is_lost_only_when_its_actor_is_gone_after_the_grace_period(tmp_path):
    spec = AnalysisSpec("00000000000000aa", str(tmp_path), top=3, samples=2)
    mark_requested(tmp_path, spec.top, spec.samples, now=NOW)
    state = analysis_state(tmp_path, never_asked, now=NOW + LOST_AFTER_S - 1)
    assert (state.status, state.top, state.samples, state.requested_at) == ("running", 3, 2, NOW)
    assert state.stage
    later = NOW + LOST_AFTER_S + 1
    assert analysis_state(tmp_path, lambda: True, now=later).status == "running"
    lost = analysis_state(tmp_path, lambda: False, now=later)
    assert lost.status == "failed" and "actor is gone" in (lost.error or "")
    assert (lost.top, lost.samples, lost.requested_at) == (3, 2, NOW)


def test_restore_puts_back_the_previous_status(tmp_path):
    spec = AnalysisSpec("00000000000000aa", str(tmp_path))
    mark_requested(tmp_path, spec.top, spec.samples)
    restore_status(tmp_path, None)
    assert not ResultsLayout(tmp_path).analysis_status.exists()
    previous = {"status": "failed", "error": "boom", "finished_at": NOW}
    ResultsLayout(tmp_path).analysis_status.write_text(json.dumps(previous))
    mark_requested(tmp_path, spec.top, spec.samples)
    restore_status(tmp_path, previous)
    assert read_status(tmp_path) == previous


def test_a_run_reports_its_stages_then_success(tmp_path):
    spec = AnalysisSpec("00000000000000aa", str(tmp_path), top=4, samples=1)
    mark_requested(tmp_path, spec.top, spec.samples, now=NOW)
    seen = []

    def analyze(results_dir, *, top, samples, log):
        assert (results_dir, top, samples) == (tmp_path, 4, 1)
        seen.append(read_status(tmp_path))
        log("re-training the 3 models of the aggregated front")
        seen.append(read_status(tmp_path))
        return {"artifacts": [{"name": "a.png"}, {"name": "analysis.json"}]}

    assert run_analysis(spec, analyze) == "succeeded"
    assert [state["stage"] for state in seen] == [
        "starting",
        "re-training the 3 models of the aggregated front",
    ]
    assert all(state["status"] == "running" and state["requested_at"] == NOW for state in seen)
    final = read_status(tmp_path)
    assert final["status"] == "succeeded" and final["artifacts"] == 2 and "stage" not in final
    assert final["finished_at"] >= final["started_at"] > NOW
    assert analysis_state(tmp_path, never_asked).status == "succeeded"


@pytest.mark.parametrize(
    ("analyze", "message"),
    [
        (None, "not an evoprune results directory"),  # the real analysis, refusing an empty directory
        (lambda *args, **kwargs: 1 / 0, "ZeroDivisionError: division by zero"),
    ],
)
def test_a_failed_run_says_why(tmp_path, analyze, message):
    spec = AnalysisSpec("00000000000000aa", str(tmp_path))
    assert run_analysis(spec, analyze) == "failed"
    state = analysis_state(tmp_path, never_asked)
    assert state.status == "failed" and message in (state.error or "") and state.finished_at is not None
