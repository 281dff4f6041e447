import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from evoprune.api.cli.main import main
from evoprune.coordinator.analysis.ensembles import ensemble_table
from evoprune.coordinator.analysis.inputs import read_results
from evoprune.workers.evaluation.retrain import retrain
from tests.coordinator.analysis.fixtures import session_results


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """The tiny experiment with the analysis's ensemble table (analysis/ensembles.parquet) beside it."""
    source, config, features = session_results(tmp_path_factory.getbasetemp())
    results_dir = tmp_path_factory.mktemp("ensemble") / "results"
    shutil.copytree(source, results_dir)
    inputs = read_results(results_dir)
    models = retrain(features, config, inputs.masks, keep_weights=False)
    (results_dir / "analysis").mkdir()
    rows = ensemble_table(inputs, features, models, results_dir / "analysis")
    # the window with the most members
    row = max(rows, key=lambda row: (row["members"], row["window_lower"]))
    assert row["members"] >= 2
    return results_dir, config, row


def test_an_ensemble_of_a_window_reproduces_the_analysis_mean_softmax_accuracy(analysed, capsys):
    results_dir, _, row = analysed
    window = f"{row['window_lower']}-{row['window_upper']}"
    assert main(["export", str(results_dir), "--ensemble", window]) == 0
    out = capsys.readouterr().out
    folder = results_dir / "exports" / f"ensemble-mean-{window}"
    report = json.loads((folder / "export.json").read_text())
    assert out.splitlines()[0].startswith(
        f"evoprune export: wrote {folder}/ (an ensemble of {row['members']}"
    )
    assert "softmax_accuracy for these members" in out and "(reproduced exactly)" in out
    assert [member["mask"] for member in report["members"]] == row["member_masks"]
    assert [member["objectives"]["accuracy"] for member in report["members"]] == row["member_accuracies"]
    # the file, reloaded in a fresh process, scores exactly the analysis's figure
    keras_file = report["formats"]["keras"]
    assert keras_file["accuracy"] == report["check"]["exported_accuracy"] == row["softmax_accuracy"]
    assert keras_file["exact"] and report["analysis"]["reproduced"] is True
    assert report["objectives"] == {"accuracy": row["softmax_accuracy"], "auroc": keras_file["auroc"]}
    assert report["ensemble"]["vote_accuracy"] == row["accuracy"]
    assert report["ensemble"]["analysis_auroc"] == row["auroc"]
    assert report["pick"]["window"] == [row["window_lower"], row["window_upper"]]
    # one backbone (the pixels), one pruned head per member
    assert report["head"]["parameters"]["after"] < report["head"]["parameters"]["before"]


@pytest.mark.slow  # 22-31 s: the quick tier stays under 15 minutes on 2 cores
def test_a_vote_ensemble_of_listed_masks_reproduces_the_majority_vote_in_every_format(analysed, capsys):
    results_dir, _, row = analysed
    masks = ",".join(reversed(row["member_masks"]))
    arguments = ["--ensemble-masks", masks, "--combine", "vote", "--format", "tflite"]
    assert main(["export", str(results_dir), *arguments]) == 0
    capsys.readouterr()
    (folder,) = (results_dir / "exports").glob("ensemble-vote-masks-*")
    report = json.loads((folder / "export.json").read_text())
    assert sorted(report["formats"]) == ["keras", "tflite"]
    for entry in report["formats"].values():
        assert entry["accuracy"] == row["accuracy"] and entry["reproduced"], entry
    # the same members as the analysis's window: it is found and reproduced
    assert report["analysis"]["column"] == "accuracy" and report["analysis"]["reproduced"] is True
    assert report["pick"]["members_from"] == "masks"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--ensemble", "95-90"], "a percentile window needs 0 <= LOWER <= UPPER <= 100"),
        (["--ensemble", "90"], "is not a percentile window; write it LOWER-UPPER"),
        (["--ensemble", "5-6"], "holds no member of the aggregated population front"),
        (["--ensemble-masks", "00" * 8], "was never evaluated"),
        (["--ensemble-masks", "abc"], "--ensemble-masks abc has 3 hex digits"),
        (["--ensemble-masks", "zz" * 8], "hex"),
        (["--ensemble-masks", ","], "needs one or more hex masks"),
        (["--ensemble", "50-100", "--run", "0"], "--run does not apply to an ensemble"),
        (["--pick", "knee", "--combine", "vote"], "--combine applies only to --ensemble"),
        (["--ensemble-masks", "00" * 8, "--kind", "archive"], "does not apply to --ensemble-masks"),
    ],
)
def test_bad_ensemble_requests_exit_2_naming_the_problem(analysed, tmp_path, capsys, arguments, message):
    results_dir = analysed[0]
    before = sorted(results_dir.rglob("*"))
    assert main(["export", str(results_dir), *arguments]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert error.startswith("evoprune: error:") and message in error, error
    assert sorted(results_dir.rglob("*")) == before


def test_a_repeated_member_and_a_pick_beside_an_ensemble_are_refused(analysed, capsys):
    results_dir, _, row = analysed
    mask = row["member_masks"][0]
    assert main(["export", str(results_dir), "--ensemble-masks", f"{mask},{mask}"]) == 2
    assert "more than once" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main(["export", str(results_dir), "--pick", "knee", "--ensemble", "50-100"])
    assert raised.value.code == 2
    assert "argument --ensemble: not allowed with argument --pick" in capsys.readouterr().err


def test_the_analysis_table_has_the_mean_softmax_accuracy(analysed):
    results_dir, _, row = analysed
    table = pq.read_table(results_dir / "analysis" / "ensembles.parquet")
    assert "softmax_accuracy" in table.column_names
    assert 0.0 < row["softmax_accuracy"] <= 1.0 and np.isfinite(row["softmax_accuracy"])


def test_an_export_that_does_not_reproduce_the_analysis_is_an_error_and_leaves_nothing(
    analysed, tmp_path, capsys
):
    import pyarrow as pa

    from evoprune.shared.parquet_files import write_parquet

    source, _, row = analysed
    results_dir = tmp_path / "results"
    shutil.copytree(source, results_dir, ignore=shutil.ignore_patterns("exports"))
    table = pq.read_table(results_dir / "analysis" / "ensembles.parquet")
    # the analysis claims a better mean-softmax accuracy for every window than its members reach
    column = table.column_names.index("softmax_accuracy")
    claimed = [
        None if value is None else value + 0.01 for value in table.column("softmax_accuracy").to_pylist()
    ]
    write_parquet(
        results_dir / "analysis" / "ensembles.parquet",
        table.set_column(column, "softmax_accuracy", pa.array(claimed, pa.float64())),
    )
    window = f"{row['window_lower']}-{row['window_upper']}"
    assert main(["export", str(results_dir), "--ensemble", window]) == 1
    error = " ".join(capsys.readouterr().err.split())
    assert "where the analysis recorded" in error and "Traceback" not in error
    assert not (results_dir / "exports").exists() or not any((results_dir / "exports").rglob("*.keras"))
