"""`evoprune validate`: the resolved config as YAML that parses back to the same config, or named errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evoprune.api.cli._reference_csv import load_reference_config
from evoprune.api.cli.main import main
from evoprune.shared.config import load_config, parse_config

REPO = Path(__file__).resolve().parents[3]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
COPIES = REPO / "tests" / "api" / "cli" / "reference_csv"


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EVOPRUNE_DATA", str(tmp_path))
    return tmp_path


def validate(argv: list[str], capsys) -> tuple[int, str, str]:
    status = main(["validate", *argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.stem)
def test_output_round_trips(path, capsys):
    status, out, _ = validate([str(path)], capsys)
    assert status == 0
    assert parse_config(yaml.safe_load(out)) == load_config(path)


def test_every_default_is_filled_in(tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text("name: small\n")
    status, out, _ = validate([str(path)], capsys)
    printed = yaml.safe_load(out)
    assert status == 0
    assert printed["training"]["early_stopping"] == {
        "enabled": True,
        "min_delta": 1e-05,
        "patience": 10,
        "restore_best_weights": "always",
        "decision": "float32",
    }
    assert printed["search"]["population_size"] == 30 and printed["backbone"]["name"] == "resnet50"


def test_no_config_validates_the_demo(capsys):
    status, out, _ = validate([], capsys)
    assert status == 0 and yaml.safe_load(out)["name"] == "demo"


def test_overrides_apply_as_for_run(capsys):
    status, out, _ = validate([str(REPO / "configs" / "rps.yaml"), "--runs", "3", "--seed", "40"], capsys)
    search = yaml.safe_load(out)["search"]
    assert status == 0 and (search["runs"], search["seed"]) == (3, 40)


def test_folders_missing_on_this_machine_are_warned_about(data_root, capsys):
    (data_root / "painting").mkdir()
    status, _, err = validate([str(REPO / "configs" / "rps.yaml")], capsys)
    assert status == 0
    assert f"warning: ood.0.source: {data_root}/srsmas is not a folder on this machine" in err
    assert "painting" not in err


@pytest.mark.parametrize(
    ("text", "messages"),
    [
        ("search:\n  population_size: 1\n  runs: 0\n", ["search.population_size:", "search.runs:"]),
        ("dataset:\n  sourse: tfds:x\n", ["dataset.sourse: unknown key"]),
        ("dataset: [unclosed\n", ["not valid YAML"]),
        (
            "dataset:\n  source: folder:${EVOPRUNE_TEST_UNSET_ROOT}/x\n",
            ["EVOPRUNE_TEST_UNSET_ROOT is not set"],
        ),
    ],
)
def test_problems_are_named_with_exit_status_2(tmp_path, capsys, text, messages):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    status, out, err = validate([str(path)], capsys)
    assert status == 2 and out == ""
    assert "Traceback" not in err
    for message in messages:
        assert message in err


def test_a_missing_file(tmp_path, capsys):
    status, _, err = validate([str(tmp_path / "none.yaml")], capsys)
    assert status == 2 and "cannot read the config file" in err and "invalid experiment config" not in err


def test_reference_csv_files(capsys):
    dataset, ga = COPIES / "configDatasetCorales.csv", COPIES / "configGAFS.csv"
    status, out, _ = validate(["--dataset-csv", str(dataset), "--ga-csv", str(ga), "--run", "4"], capsys)
    assert status == 0
    assert parse_config(yaml.safe_load(out)) == load_reference_config(dataset, ga, 4)


def test_reference_seed_is_seed_plus_run_and_overrides_apply(capsys):
    argv = ["--dataset-csv", str(COPIES / "configDatasetRPS.csv"), "--ga-csv", str(COPIES / "configGAFS.csv")]
    status, out, _ = validate([*argv, "--run", "2", "--seed", "10", "--max-evaluations", "60"], capsys)
    search = yaml.safe_load(out)["search"]
    assert status == 0 and (search["seed"], search["runs"], search["max_evaluations"]) == (12, 1, 60)
    status, _, err = validate([*argv, "--extractor", "densenet"], capsys)
    assert status == 2 and "column 3 (input size): is 2048 but the densenet121 extractor gives 1024" in err
    status, out, _ = validate(argv, capsys)
    assert status == 0 and yaml.safe_load(out)["search"]["seed"] == 0, "--run defaults to 0"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["configs/rps.yaml", "--dataset-csv", "d.csv", "--ga-csv", "g.csv"], "give either CONFIG"),
        (["configs/rps.yaml", "--run", "3"], "not both"),
        (["--run", "3"], "--dataset-csv and --ga-csv missing"),
        (["--dataset-csv", "d.csv"], "--ga-csv missing"),
    ],
)
def test_reference_flags_combined_wrongly(argv, message, capsys):
    status, _, err = validate(argv, capsys)
    assert status == 2 and message in err and "Traceback" not in err


def test_bad_reference_csv_names_file_line_and_column(tmp_path, capsys):
    ga = tmp_path / "configGA.csv"
    ga.write_text("30,first,2048,512,-1,200,1,1,1,0\n")
    argv = ["--dataset-csv", str(COPIES / "configDatasetRPS.csv"), "--ga-csv", str(ga)]
    status, _, err = validate(argv, capsys)
    assert status == 2
    assert f"{ga} line 1, column 7 (neurons|connections): pruning single connections" in err


def test_run_refuses_config_with_reference_flags(capsys):
    status = main(["run", "configs/rps.yaml", "--dataset-csv", "d.csv", "--ga-csv", "g.csv"])
    assert status == 2 and "give either CONFIG" in capsys.readouterr().err
