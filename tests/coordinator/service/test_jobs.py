"""The service's jobs: what the status file and the actor's presence say, and how a run reports, per kind."""

from __future__ import annotations

import json

import pytest

from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.service.jobs import (
    LOST_AFTER_S,
    WAITING_STAGE,
    JobStatus,
    job_state,
    read_state,
    read_status_text,
    restore_status_text,
    waiting_state,
    write_state,
)
from evoprune.coordinator.service.jobs_analysis import ANALYSIS, AnalysisSpec, AnalysisState
from evoprune.coordinator.service.jobs_export import EXPORT, ExportSpec, ExportState
from evoprune.coordinator.service.jobs_run import run_job

NOW = 1_000_000.0
EXPERIMENT = "00000000000000aa"
# the options of `export_spec`, as the export status file reports them
OPTIONS = {
    "mask": None,
    "rule": "knee",
    "min_accuracy": None,
    "run": 1,
    "kind": "archive",
    "formats": ["keras"],
    "quantize": None,
}


def never_asked() -> bool:
    raise AssertionError("the actor's presence was asked about without need")


def analysis_spec(tmp_path, **options):
    return AnalysisSpec(EXPERIMENT, str(tmp_path), **options)


def export_spec(tmp_path):
    return ExportSpec(EXPERIMENT, str(tmp_path), "knee", rule="knee", run=1, kind="archive")


def test_without_a_status_file_the_analysis_folder_decides(tmp_path):
    assert job_state(ANALYSIS, tmp_path, never_asked).status == "none"
    (tmp_path / "analysis").mkdir()
    assert job_state(ANALYSIS, tmp_path, never_asked).status == "none"
    (tmp_path / "analysis" / "analysis.json").write_text("{}")
    assert job_state(ANALYSIS, tmp_path, never_asked).status == "succeeded"
    assert job_state(EXPORT, tmp_path, never_asked).status == "none"  # an export has no such folder rule
    # an unreadable or foreign status file is no status file
    for text in ("{not json", '["running"]', '{"status": "dancing"}'):
        ResultsLayout(tmp_path).analysis_status.write_text(text)
        assert read_state(ANALYSIS, tmp_path) is None
        assert job_state(ANALYSIS, tmp_path, never_asked).status == "succeeded"


def test_status_files_written_before_the_job_family_still_open(tmp_path):
    # as analysis_status.py and export_launch.py wrote them, keys in their order
    analysis = {"requested_at": NOW, "started_at": NOW + 1, "top": 3, "samples": 2, "status": "succeeded",
                "finished_at": NOW + 9, "artifacts": 7}  # fmt: skip
    export = {"requested_at": NOW, "started_at": NOW + 1, "name": "knee", "options": OPTIONS,
              "status": "succeeded", "finished_at": NOW + 9, "objectives": {"accuracy": 0.9},
              "mask": "0f"}  # fmt: skip
    ResultsLayout(tmp_path).analysis_status.write_text(json.dumps(analysis))
    ResultsLayout(tmp_path).export_status.write_text(json.dumps(export))
    read_analysis, read_export = read_state(ANALYSIS, tmp_path), read_state(EXPORT, tmp_path)
    assert read_analysis == AnalysisState(JobStatus.SUCCEEDED, None, None, NOW, NOW + 1, NOW + 9, 3, 2, 7)
    assert isinstance(read_export, ExportState) and read_export.objectives == {"accuracy": 0.9}
    # written again, the same fields and values (the order of the keys aside)
    write_state(ANALYSIS, tmp_path, read_analysis)
    write_state(EXPORT, tmp_path, read_export)
    assert json.loads(ResultsLayout(tmp_path).analysis_status.read_text()) == analysis
    assert json.loads(ResultsLayout(tmp_path).export_status.read_text()) == export


def test_a_field_of_the_wrong_type_reads_as_missing(tmp_path):
    text = json.dumps({"status": "running", "stage": 3, "requested_at": True, "top": "3", "samples": 2})
    ResultsLayout(tmp_path).analysis_status.write_text(text)
    assert read_state(ANALYSIS, tmp_path) == AnalysisState(JobStatus.RUNNING, samples=2)


@pytest.mark.parametrize("kind", [ANALYSIS, EXPORT], ids=["analysis", "export"])
def test_a_running_job_is_lost_only_when_its_actor_is_gone_after_the_grace_period(tmp_path, kind):
    spec = analysis_spec(tmp_path, top=3, samples=2) if kind is ANALYSIS else export_spec(tmp_path)
    waiting = waiting_state(spec, now=NOW)
    write_state(kind, tmp_path, waiting)
    state = job_state(kind, tmp_path, never_asked, now=NOW + LOST_AFTER_S - 1)
    assert state == waiting and state.stage == WAITING_STAGE
    later = NOW + LOST_AFTER_S + 1
    assert job_state(kind, tmp_path, lambda: True, now=later).status == "running"
    lost = job_state(kind, tmp_path, lambda: False, now=later)
    assert lost.status == "failed" and f"the {kind.noun} stopped" in (lost.error or "")
    assert "actor is gone" in (lost.error or "") and lost.stage is None
    assert (lost.requested_at, lost.finished_at, type(lost)) == (NOW, None, kind.state_type)
    if kind is ANALYSIS:
        assert (lost.top, lost.samples) == (3, 2)
    else:
        assert lost.name == "knee" and lost.options == OPTIONS


def test_restore_puts_back_the_previous_status_as_it_was(tmp_path):
    spec = analysis_spec(tmp_path)
    previous = read_status_text(ANALYSIS, tmp_path)
    write_state(ANALYSIS, tmp_path, waiting_state(spec))
    restore_status_text(ANALYSIS, tmp_path, previous)
    assert not ResultsLayout(tmp_path).analysis_status.exists()
    text = json.dumps({"finished_at": NOW, "status": "failed", "error": "boom", "unknown": 1})
    ResultsLayout(tmp_path).analysis_status.write_text(text)
    previous = read_status_text(ANALYSIS, tmp_path)
    write_state(ANALYSIS, tmp_path, waiting_state(spec))
    restore_status_text(ANALYSIS, tmp_path, previous)
    assert ResultsLayout(tmp_path).analysis_status.read_text() == text


def test_an_analysis_run_reports_its_stages_then_success(tmp_path):
    spec = analysis_spec(tmp_path, top=4, samples=1)
    write_state(ANALYSIS, tmp_path, waiting_state(spec, now=NOW))
    seen = []

    def analyse(given, log):
        assert given is spec
        seen.append(read_state(ANALYSIS, tmp_path))
        log("re-training the 3 models of the aggregated front")
        seen.append(read_state(ANALYSIS, tmp_path))
        return {"artifacts": 2}

    assert run_job(spec, analyse) == "succeeded"
    assert [state.stage for state in seen] == ["starting", "re-training the 3 models of the aggregated front"]
    assert all(state.status == "running" and state.requested_at == NOW for state in seen)
    final = json.loads(ResultsLayout(tmp_path).analysis_status.read_text())
    assert final["status"] == "succeeded" and final["artifacts"] == 2 and "stage" not in final
    assert (final["top"], final["samples"]) == (4, 1)
    assert final["finished_at"] >= final["started_at"] > NOW
    assert job_state(ANALYSIS, tmp_path, never_asked).status == "succeeded"


def test_an_export_run_reports_the_member_and_its_options(tmp_path):
    spec = export_spec(tmp_path)
    outcome = {"objectives": {"accuracy": 0.5}, "mask": "0f"}
    assert run_job(spec, lambda given, log: outcome) == "succeeded"
    final = json.loads(ResultsLayout(tmp_path).export_status.read_text())
    assert final["name"] == "knee" and final["mask"] == "0f" and final["objectives"] == {"accuracy": 0.5}
    assert final["options"] == OPTIONS
    assert not ResultsLayout(tmp_path).analysis_status.exists()


def fail(given, log):
    raise ZeroDivisionError("division\n   by zero")


@pytest.mark.parametrize(
    ("kind", "work", "message"),
    [
        # the real analysis, refusing an empty directory
        (ANALYSIS, None, "not an evoprune results directory"),
        (ANALYSIS, fail, "ZeroDivisionError: division by zero"),
        (EXPORT, fail, "ZeroDivisionError: division by zero"),
        # an outcome the kind's state cannot hold fails the job instead of leaving it running
        (ANALYSIS, lambda given, log: {"files": 2}, "AnalysisState has no field 'files'"),
        (EXPORT, lambda given, log: {"mask": 15}, "ExportState has no field 'mask' of the type of 15"),
    ],
    ids=["analysis refused", "analysis crashed", "export crashed", "unknown outcome", "mistyped outcome"],
)
def test_a_failed_run_says_why_on_one_line(tmp_path, kind, work, message):
    spec = analysis_spec(tmp_path) if kind is ANALYSIS else export_spec(tmp_path)
    assert run_job(spec, work) == "failed"
    state = job_state(kind, tmp_path, never_asked)
    assert state.status == "failed" and message in (state.error or "") and state.finished_at is not None
    assert state.stage is None
