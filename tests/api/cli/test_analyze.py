import json
import shutil

import pytest

from evoprune.api.cli.main import main
from tests.coordinator.analysis.fixtures import session_results


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    results_dir, _, _ = session_results(tmp_path_factory.getbasetemp())
    return results_dir


def copy_of(results_dir, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results_dir, copy)
    return copy


def snapshot(directory):
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_analyze_writes_the_analysis_folder(finished, tmp_path, capsys):
    results_dir = copy_of(finished, tmp_path)
    assert main(["analyze", str(results_dir), "--top", "5", "--samples", "2"]) == 0
    captured = capsys.readouterr()
    out = results_dir / "analysis"
    assert captured.out.strip() == str(out)
    assert "re-training" in captured.err and "reproduced" in captured.err
    index = json.loads((out / "analysis.json").read_text())
    assert len(index["top"]) == 5 and index["heatmaps"]["images"] == 2
    for entry in index["artifacts"]:
        assert (out / entry["name"]).is_file()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "summary.json").write_text('{"status": "cancelled"}'), "has not finished"),
        (lambda d: (d / "summary.json").unlink(), "has not finished"),
        (lambda d: (d / "front.parquet").write_bytes(b"not parquet"), "front.parquet is corrupt"),
        (lambda d: (d / "config.yaml").write_text("search: {runs: -1}"), "corrupt"),
        (lambda d: (d / "config.yaml").unlink(), "not an evoprune results directory"),
    ],
)
def test_bad_directories_exit_2_and_nothing_is_overwritten(finished, tmp_path, capsys, damage, message):
    results_dir = copy_of(finished, tmp_path)
    (results_dir / "analysis").mkdir()
    (results_dir / "analysis" / "analysis.json").write_text('{"previous": true}')
    damage(results_dir)
    before = snapshot(results_dir)
    assert main(["analyze", str(results_dir)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("evoprune: error:") and message in " ".join(error.split())
    assert "Traceback" not in error
    assert snapshot(results_dir) == before


def test_missing_directory_exits_2(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nowhere")]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()


def test_bad_options_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["analyze", str(tmp_path), "--top", "0"])
    assert raised.value.code == 2
    assert "must be > 0" in capsys.readouterr().err
