import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import evoprune
from evoprune.coordinator.analysis.inputs import AnalysisError
from evoprune.coordinator.experiment import ExperimentError
from evoprune.coordinator.results.picks import PickError, front_rows, pick
from evoprune.shared.config import ConfigError
from tests.coordinator.analysis.fixtures import DIGITS, session_results

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    results_dir, _, _ = session_results(tmp_path_factory.getbasetemp())
    return results_dir


def test_open_gives_tables_summary_and_picks(finished):
    result = evoprune.open(finished)
    assert result.path == finished and result.config.name == "tiny"
    assert list(result.runs["run"]) == [0, 1]
    assert {"hypervolume_population", "hypervolume_archive"} <= set(result.runs)
    assert len(result.evaluations) == result.summary["aggregate"]["evaluations"]
    front = result.front()
    assert set(front["run"]) == {-1, 0, 1}
    aggregate = result.front(run=-1)
    assert list(aggregate["accuracy"]) == sorted(aggregate["accuracy"], reverse=True)
    rows = front_rows(pq.read_table(finished / "front.parquet").to_pylist())
    assert result.pick("knee") == dict(pick(rows, "knee"))
    assert result.pick("smallest", min_accuracy=0.5, run=0)["run"] == 0
    with pytest.raises(PickError, match="run 5 has no front"):
        result.pick(run=5)


def test_front_kinds_are_told_apart_when_the_file_has_them(finished, tmp_path):
    result = evoprune.open(finished)
    rows = pq.read_table(finished / "front.parquet").to_pylist()
    assert result.has_front_kinds
    for kind in ("population", "archive"):
        expected = [row for row in rows if row["kind"] == kind]
        assert sorted(result.front(kind)["mask"]) == sorted(row["mask"] for row in expected)
        best = max(row["accuracy"] for row in expected if row["run"] == 1)
        assert result.pick(run=1, kind=kind)["accuracy"] == best
    # a file from before fronts had kinds holds the archive fronts only, read for either kind
    legacy = tmp_path / "results"
    shutil.copytree(finished, legacy)
    table = pq.read_table(legacy / "front.parquet")
    archive = table.filter(pa.compute.equal(table.column("kind"), "archive"))
    # written as that version wrote it: without the whole-file digest of today's files
    pq.write_table(archive.drop_columns(["kind"]).replace_schema_metadata(None), legacy / "front.parquet")
    old = evoprune.open(legacy)
    assert not old.has_front_kinds
    assert len(old.front()) == len(old.front("archive")) == archive.num_rows


def test_open_refuses_what_is_not_a_finished_experiment(tmp_path):
    with pytest.raises(AnalysisError, match="is not a directory"):
        evoprune.open(tmp_path / "missing")


def test_run_from_a_mapping_with_overrides(tmp_path):
    config = {**DIGITS, "cache_dir": str(tmp_path / "cache")}
    result = evoprune.run(config, runs=1, max_evaluations=8, seed=11, out=tmp_path / "out")
    assert result.summary["status"] == "succeeded"
    assert result.config.search.runs == 1 and result.config.search.seed == 11
    assert len(result.evaluations) == 8 and set(result.evaluations["run"]) == {0}
    with pytest.raises(ExperimentError, match="not an evoprune results directory"):
        (tmp_path / "busy").mkdir()
        (tmp_path / "busy" / "file").write_text("x")
        evoprune.run(config, out=tmp_path / "busy")
    with pytest.raises(ConfigError, match="runs"):
        evoprune.run(config, runs=0, out=tmp_path / "never")


def test_a_config_that_cannot_run_raises_with_the_reason(tmp_path):
    config = {**DIGITS, "ood": [], "cache_dir": str(tmp_path / "cache")}
    with pytest.raises(ExperimentError, match="no out-of-distribution source"):
        evoprune.run(config, out=tmp_path / "out")


def notebook_example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- notebook-example[^>]*-->\n```python\n(.*?)```", text, re.DOTALL)
    assert match, "README.md lost its notebook example"
    return match.group(1)


def test_the_readme_example_has_five_lines():
    assert len(notebook_example().strip().splitlines()) == 5


def test_the_readme_notebook_example_runs_on_the_demo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    namespace: dict = {}
    exec(notebook_example(), namespace)
    result = namespace["result"]
    assert len(result.evaluations) == 30 and result.summary["status"] == "succeeded"
    exported = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert exported.is_file() and exported.suffix == ".keras"
    assert exported.parent.parent == result.path / "exports"
