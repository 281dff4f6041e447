"""The command line's small promises: version, help, error messages, a quiet start, an honest progress bar."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import evoprune
from evoprune.api.cli.main import build_parser, main
from tests.coordinator.test_experiment import cli, write_config

CLI_TIMEOUT_S = 120


def _evoprune(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "evoprune.api.cli", *argv],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        env=env,
        check=False,
    )


def test_version_is_the_installed_packages(capsys):
    with pytest.raises(SystemExit) as exit_status:
        main(["--version"])
    assert exit_status.value.code == 0
    assert capsys.readouterr().out.strip() == f"evoprune {evoprune.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", evoprune.__version__)


def test_run_help_gives_the_default_worker_pool(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "default: one per GPU in the cluster, or one per CPU node when it has no GPUs" in text
    assert "else 1)" not in text


def test_a_missing_config_file_says_so(tmp_path, capsys):
    assert cli(["run", str(tmp_path / "nowhere.yaml"), "--workers", "0"]) == 2
    err = " ".join(capsys.readouterr().err.split())  # a long line is wrapped at 110 columns
    assert f"{tmp_path / 'nowhere.yaml'}: cannot read the config file: No such file or directory" in err
    assert "invalid experiment config" not in err


def test_a_yaml_error_names_the_file_and_keeps_its_lines(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a short name, so that no line is long enough to be wrapped
    path = Path("broken.yaml")
    path.write_text('name: x\ndataset:\n  source: "sklearn:digits\nsearch: {runs: 2}\n')
    assert cli(["run", str(path), "--workers", "0"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"evoprune: error: {path}: not valid YAML"
    assert any(line.strip() == f'in "{path}", line 3, column 11:' for line in lines)
    assert any(line.strip() == 'source: "sklearn:digits' for line in lines)  # the offending line, as is
    assert "<unicode string>" not in "\n".join(lines)


def test_field_errors_stay_one_per_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = Path("invalid.yaml")
    path.write_text("name: x\nsearch: {runs: 0, population_size: 1}\n")
    assert cli(["run", str(path), "--workers", "0"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"evoprune: error: {path}: invalid experiment config"
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == [
        "search.population_size",
        "search.runs",
    ]


@pytest.mark.parametrize("user_level", [None, "0"], ids=["default", "users-own"])
def test_tensorflow_starts_quietly_on_cpu_unless_the_user_set_a_level(tmp_path, user_level):
    # `validate` imports no TensorFlow; `extract` of a missing file does, before it finds no file
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_BACKEND")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU machine, whatever this one has
    if user_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = user_level
    probe = (
        "from evoprune.api._quiet_tensorflow import quiet_tensorflow_start; quiet_tensorflow_start(); "
        "import os, tensorflow as tf; tf.config.list_physical_devices('GPU'); "
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    if user_level is None:
        assert result.stdout.strip() == "3"
        assert result.stderr == "", result.stderr
    else:
        assert result.stdout.strip() == "0"
        # the user asked for everything: TensorFlow's own start-up lines are theirs to see
        assert "oneDNN" in result.stderr or "cuda" in result.stderr.lower()


def test_the_progress_bar_ends_on_the_summarys_hypervolume(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["run", str(write_config(tmp_path / "c.yaml")), "--workers", "0", "--out", str(out)]) == 0
    shown = re.findall(r"hv=(\d\.\d{4})", capsys.readouterr().err)
    summary = json.loads((out / "summary.json").read_text())
    # the bar follows the live front events, which carry the archive front's hypervolume
    assert shown and shown[-1] == f"{summary['aggregate']['hypervolume_archive']:.4f}"
