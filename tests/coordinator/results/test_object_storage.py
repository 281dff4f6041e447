"""`evoprune run --out s3://...`, a SIGKILL, `resume s3://...` and `evoprune.open`, on a real S3 server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest

import evoprune
from evoprune.coordinator.analysis.inputs import AnalysisError
from evoprune.coordinator.results.writer import read_evaluations
from evoprune.shared.parquet_files import read_verified_parquet
from evoprune.shared.storage import storage_path
from tests import s3_server
from tests.coordinator.test_experiment import REPO, cli, comparable, uninterrupted, write_config

pytestmark = pytest.mark.s3
# the server and a fresh bucket per test, as fixtures of this module
s3_environment = s3_server.s3_environment
bucket = s3_server.bucket


def test_a_killed_run_on_s3_resumes_to_the_uninterrupted_result(tmp_path, bucket, capsys):
    config = write_config(tmp_path / "c.yaml", max_evaluations=80)
    expected = uninterrupted(tmp_path, config)
    out = f"s3://{bucket}/experiments/fake"
    log = tmp_path / "trained.log"
    environment = {**os.environ, "FAKE_DELAY_S": "0.05", "FAKE_LOG": str(log), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tests.coordinator.fake_cli"]
    process = subprocess.Popen(
        [*command, "run", str(config), "--workers", "0", "--out", out],
        env=environment,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    root = storage_path(out)
    journal = root / "state" / "journal.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 70:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (root / "summary.json").exists()
    # a second run into the same prefix is refused: it holds this experiment, unfinished
    assert cli(["run", str(config), "--workers", "0", "--out", out]) == 2
    assert "evoprune resume" in capsys.readouterr().err

    resumed = subprocess.run(
        [*command, "resume", out, "--workers", "0"],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == out
    assert comparable(read_evaluations(root)) == comparable(expected)
    front = read_verified_parquet(root / "front.parquet")
    assert front.equals(read_verified_parquet(tmp_path / "straight" / "front.parquet"))
    trained = log.read_text().split()
    assert len(trained) == len(set(trained)), "a mask was trained twice"
    for name in ("config.yaml", "summary.json", "front.png", "hypervolume.png", "state/checkpoint.json"):
        assert (root / name).is_file(), name

    result = evoprune.open(out)
    assert str(result.path) == out and result.summary["status"] == "succeeded"
    assert len(result.evaluations) == 160
    assert cli(["resume", out, "--workers", "0"]) == 2
    assert "already finished" in capsys.readouterr().err


def test_a_new_run_on_s3_and_local_directories_alike(tmp_path, bucket, capsys):
    config = write_config(tmp_path / "c.yaml", max_evaluations=20)
    out = f"s3://{bucket}/one"
    assert cli(["run", str(config), "--workers", "0", "--out", out]) == 0
    assert capsys.readouterr().out.strip() == out
    local = tmp_path / "local"
    assert cli(["run", str(config), "--workers", "0", "--out", str(local)]) == 0
    remote_rows = pa.Table.from_pylist(read_evaluations(storage_path(out))).drop_columns(["seconds"])
    local_rows = pa.Table.from_pylist(read_evaluations(local)).drop_columns(["seconds"])
    assert remote_rows.equals(local_rows)
    with pytest.raises(AnalysisError, match="not a directory"):
        evoprune.open(f"s3://{bucket}/missing")
