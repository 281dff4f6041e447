import json
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evoprune.api.cli.main import main
from evoprune.coordinator.results.picks import front_rows, has_kinds, pick
from evoprune.shared.parquet_files import write_parquet
from evoprune.workers.export.inputs import raw_inputs
from evoprune.workers.features.assemble import fitness_rows
from tests.coordinator.analysis.fixtures import session_results

# plain Keras in a fresh interpreter: the file needs nothing of evoprune to load
LOAD_AND_PREDICT = """
import json, sys
import numpy as np
import keras
paths, inputs, out = json.loads(sys.argv[1])
x = np.load(inputs)
models = [keras.saving.load_model(path) for path in paths]
np.savez(out, **{str(i): np.asarray(model.predict(x, verbose=0)) for i, model in enumerate(models)})
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    results_dir, config, _ = session_results(tmp_path_factory.getbasetemp())
    return results_dir, config


def copy_of(results_dir, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(results_dir, copy)
    return copy


def front(results_dir):
    return pq.read_table(results_dir / "front.parquet").to_pylist()


@pytest.mark.slow  # 22-31 s: the quick tier stays under 15 minutes on 2 cores
def test_export_writes_a_smaller_model_that_reloads_with_plain_keras(finished, tmp_path, capsys):
    results_dir, config = finished
    results_dir = copy_of(results_dir, tmp_path)
    rows = front(results_dir)
    knee = pick(front_rows(rows), "knee")
    assert main(["export", str(results_dir), "--pick", "knee"]) == 0
    captured = capsys.readouterr()
    model = results_dir / "exports" / "knee" / "model.keras"
    report = json.loads((model.parent / "export.json").read_text())
    # a short summary and the report's path, not the report
    summary = captured.out.splitlines()
    assert summary[0].startswith(f"evoprune export: wrote {model.parent}/") and len(summary) < 10
    assert "head parameters" in captured.out and f"report: {model.parent / 'export.json'}" in summary[-1]
    assert "model.keras" in captured.out and "(exact)" in captured.out
    assert report["model"] == str(model) and model.is_file()
    # reloaded in a fresh process by Keras: the recorded accuracy, and the search's AUROC to float error
    (keras_file,) = report["formats"].values()
    assert keras_file["file"] == "model.keras" and keras_file["bytes"] == model.stat().st_size
    assert keras_file["runtime"]["name"].startswith("keras.saving.load_model")
    assert keras_file["exact"] and keras_file["accuracy"] == knee["accuracy"]
    assert keras_file["auroc"] == pytest.approx(keras_file["retrained_auroc"], abs=1e-6)
    assert report["mask"] == knee["mask"]
    assert report["objectives"]["accuracy"] == knee["accuracy"]
    assert report["pick"]["rule"] == "knee" and "Das 1999" in report["pick"]["method"]
    assert report["pick"]["kind"] == ("population" if has_kinds(rows) else "archive")
    check = report["check"]
    assert check["exact"] and check["exported_accuracy"] == check["recorded_accuracy"] == knee["accuracy"]
    head = report["head"]
    active = report["active_bits"]
    assert head["widths"] == {"before": [64, 64, 10], "after": [active, 64, 10]}
    assert head["parameters"]["after"] < head["parameters"]["before"]
    assert head["flops"]["after"] < head["flops"]["before"]
    latency = head["cpu_latency_ms"]
    assert set(latency["after"]) == set(latency["before"]) == {"single_ms", "batched_ms"}
    for name in ("before", "after"):
        for key, (first, third) in latency["spread"][name].items():
            assert 0 < first <= latency[name][key] <= third
    assert latency["method"]["batch_size"] == {"single_ms": 1, "batched_ms": 256}
    assert latency["method"]["repetitions"] >= 30
    assert report["fold"]["exported"] == 0 and report["fold"]["folds"] == 1
    assert report["input"] == {"kind": "images", "shape": [8, 8, 1], "pixel_max": 16.0}

    # the same point again, as its mask, to another file
    again = tmp_path / "again.keras"
    assert main(["export", str(results_dir), "--mask", knee["mask"], "--out", str(again), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pick"] == {"rule": "mask"}
    assert (tmp_path / "export.json").is_file()

    samples = raw_inputs(config, fitness_rows(config, 0))
    np.save(tmp_path / "x.npy", samples.values)
    arguments = json.dumps([[str(model), str(again)], str(tmp_path / "x.npy"), str(tmp_path / "p.npz")])
    subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, arguments], check=True, timeout=300)
    predictions = np.load(tmp_path / "p.npz")
    accuracy = float(np.mean(predictions["0"].argmax(axis=1) == samples.labels))
    assert accuracy == knee["accuracy"]
    np.testing.assert_array_equal(predictions["0"], predictions["1"])


@pytest.mark.slow  # 22-31 s: the quick tier stays under 15 minutes on 2 cores
def test_best_accuracy_and_smallest_pick_what_the_rules_say(finished, tmp_path, capsys):
    results_dir = copy_of(finished[0], tmp_path)
    rows = front_rows(front(results_dir))
    floor = sorted(row["accuracy"] for row in rows)[len(rows) // 2]
    expected = min(
        (row for row in rows if row["accuracy"] >= floor),
        key=lambda row: (row["active_fraction"], -row["accuracy"], -row["auroc"], row["mask"]),
    )
    arguments = ["export", str(results_dir), "--pick", "smallest", "--min-accuracy", str(floor), "--json"]
    assert main(arguments) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mask"] == expected["mask"] and report["pick"]["min_accuracy"] == floor
    assert (
        main(
            [
                "export",
                str(results_dir),
                "--pick",
                "best-accuracy",
                "--run",
                "1",
                "--kind",
                "archive",
                "--json",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    best = max(row["accuracy"] for row in front_rows(front(results_dir), run=1, kind="archive"))
    assert report["objectives"]["accuracy"] == best and report["pick"]["run"] == 1
    assert report["model"].endswith("exports/best-accuracy-run1/model.keras")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--pick", "knee", "--run", "9"], "run 9 has no front; the results hold runs -1 (all runs), 0, 1"),
        (["--mask", "abc"], "--mask abc has 3 hex digits; a mask of this experiment has 64 bits"),
        (["--mask", "00" * 8], "was never evaluated"),
        (["--mask", "zz" * 8], "hex"),
        (["--pick", "smallest", "--min-accuracy", "0.999"], "no front member has accuracy >= 0.999"),
        (["--pick", "smallest"], "--pick smallest needs --min-accuracy"),
        (["--pick", "knee", "--min-accuracy", "0.5"], "--min-accuracy applies only to --pick smallest"),
        (["--pick", "knee", "--out", "model.h5"], "must end in .keras"),
        (["--mask", "00" * 8, "--run", "0"], "they do not apply to --mask"),
        (["--pick", "knee", "--format", "tflite,onxx"], "unknown export format 'onxx'; choose from keras,"),
        (["--pick", "knee", "--quantize", "int8"], "--quantize int8 applies to the TFLite file only"),
        (["--pick", "knee", "--format", "onnx", "--quantize", "float16"], "add --format tflite"),
    ],
)
def test_bad_requests_exit_2_naming_the_problem(finished, tmp_path, capsys, arguments, message):
    results_dir = copy_of(finished[0], tmp_path)
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    assert main(["export", str(results_dir), *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith("evoprune: error:") and message in " ".join(error.split())
    assert "Traceback" not in error
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before


def test_a_results_directory_without_its_front_exits_2(finished, tmp_path, capsys):
    results_dir = copy_of(finished[0], tmp_path)
    (results_dir / "front.parquet").unlink()
    assert main(["export", str(results_dir), "--pick", "knee"]) == 2
    assert "front.parquet is missing" in " ".join(capsys.readouterr().err.split())
    assert main(["export", str(tmp_path / "nowhere"), "--pick", "knee"]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_a_model_that_does_not_reproduce_the_record_is_an_error(finished, tmp_path, capsys):
    results_dir = copy_of(finished[0], tmp_path)
    table = pq.read_table(results_dir / "front.parquet")
    # the record claims a better accuracy than the mask's head reaches
    accuracy = pa.array([value + 0.01 for value in table.column("accuracy").to_pylist()], pa.float64())
    table = table.set_column(table.column_names.index("accuracy"), "accuracy", accuracy)
    write_parquet(results_dir / "front.parquet", table)  # a sound file, with its own digest
    assert main(["export", str(results_dir), "--pick", "best-accuracy"]) == 1
    error = " ".join(capsys.readouterr().err.split())
    assert "evoprune: error: re-training the mask gives accuracy" in error
    assert not (results_dir / "exports").exists() or not any((results_dir / "exports").rglob("*.keras"))


def test_an_unknown_quantisation_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as raised:
        main(["export", "anywhere", "--pick", "knee", "--format", "tflite", "--quantize", "int4"])
    assert raised.value.code == 2
    error = capsys.readouterr().err
    assert "argument --quantize: invalid choice: 'int4'" in error and "float16" in error and "int8" in error
