import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from evoprune.api.cli.main import build_parser
from evoprune.api.cli.run import resume_command, run_command
from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.coordinator.results.summary import Summary
from evoprune.coordinator.results.writer import read_evaluations
from evoprune.shared.config import demo_config_path, load_config, parse_config
from evoprune.shared.events import EventBus
from tests.coordinator.fake_cli import BACKEND
from tests.coordinator.fakes import FakeProblem

REPO = Path(__file__).resolve().parents[2]
SEARCH = {"population_size": 10, "max_evaluations": 60, "runs": 2, "seed": 7}


def write_config(path: Path, **search) -> Path:
    path.write_text(yaml.safe_dump({"name": "fake", "search": {**SEARCH, **search}}))
    return path


def cli(argv):
    args = build_parser().parse_args(argv)
    return (run_command if args.command == "run" else resume_command)(args, BACKEND)


def snapshot(directory: Path) -> dict:
    return {p.relative_to(directory): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def comparable(rows):
    return [
        (r["run"], r["step"], r["mask"], r["accuracy"], r["active_fraction"], r["auroc"], r["cached"])
        for r in rows
    ]


def test_run_writes_the_results_directory(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli(["run", str(write_config(tmp_path / "c.yaml")), "--workers", "0", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    for name in (
        "config.yaml",
        "evaluations.parquet",
        "front.parquet",
        "summary.json",
        "front.png",
        "hypervolume.png",
    ):
        assert (out / name).exists(), name
    evaluations = pq.read_table(out / "evaluations.parquet")
    assert evaluations.column_names == [
        "run",
        "step",
        "mask",
        "mask_length",
        "accuracy",
        "active_fraction",
        "auroc",
        "cached",
        "seconds",
        "worker",
        "epochs",
        "fidelity",
    ]
    assert evaluations.num_rows == 120
    rows = evaluations.to_pylist()
    assert sorted((r["run"], r["step"]) for r in rows) == [(r["run"], r["step"]) for r in rows]
    front = pq.read_table(out / "front.parquet").to_pylist()
    assert {(r["run"], r["kind"]) for r in front} == {
        (run, kind) for run in (-1, 0, 1) for kind in ("population", "archive")
    }
    summary = json.loads((out / "summary.json").read_text())
    assert [run["seed"] for run in summary["runs"]] == [7, 8]
    assert summary["aggregate"]["evaluations"] == 120
    for kind in ("population", "archive"):
        volume = f"hypervolume_{kind}"
        assert summary["aggregate"][volume] >= max(run[volume] for run in summary["runs"])
        for run in (-1, 0, 1):
            part = summary["aggregate"] if run == -1 else summary["runs"][run]
            assert part[f"front_size_{kind}"] == sum(r["run"] == run and r["kind"] == kind for r in front)
    for run in summary["runs"]:
        # the final population is a subset of the run's evaluations, and holds at most population_size masks
        assert run["hypervolume_population"] <= run["hypervolume_archive"]
        assert run["front_size_population"] <= SEARCH["population_size"]
    assert summary["aggregate"]["cache_hits"] == sum(r["cached"] for r in rows)
    assert "numpy" in summary["versions"]
    assert load_config(out / "config.yaml").search.seed == 7


def test_command_line_overrides(tmp_path):
    out = tmp_path / "out"
    config = write_config(tmp_path / "c.yaml")
    assert (
        cli(
            [
                "run",
                str(config),
                "--workers",
                "0",
                "--out",
                str(out),
                "--runs",
                "3",
                "--max-evaluations",
                "20",
                "--seed",
                "100",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert [(r["seed"], r["evaluations"]) for r in summary["runs"]] == [(100, 20), (101, 20), (102, 20)]


def test_demo_config_is_valid_and_read_from_the_package():
    # an editable install in strict mode reaches it through a link: the same file
    assert demo_config_path().resolve() == REPO / "configs" / "demo.yaml"
    config = load_config(demo_config_path())
    assert config.dataset.source == "sklearn:digits" and config.backbone.name == "pixels"
    assert config.fitness_split == "test"


def bad_input(capsys, argv):
    status = cli(argv)
    error = capsys.readouterr().err
    assert status == 2
    assert "Traceback" not in error and error.startswith("evoprune: error:")
    return " ".join(error.split())


def test_bad_input_is_refused_clearly_and_touches_nothing(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("name: x\nsearch:\n  populaton_size: 3\n")
    assert "populaton_size: unknown key" in bad_input(
        capsys, ["run", str(unknown), "--out", str(tmp_path / "u")]
    )
    assert not (tmp_path / "u").exists()

    message = bad_input(capsys, ["run", str(config), "--max-evaluations", "5", "--out", str(tmp_path / "b")])
    assert "population_size (10) is larger than max_evaluations (5)" in message

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert "not an evoprune results directory" in bad_input(
        capsys, ["run", str(config), "--out", str(foreign)]
    )

    finished = tmp_path / "finished"
    assert cli(["run", str(config), "--workers", "0", "--out", str(finished)]) == 0
    capsys.readouterr()
    before = snapshot(finished)
    other = write_config(tmp_path / "other.yaml", seed=8)
    assert "belongs to another experiment" in bad_input(capsys, ["run", str(other), "--out", str(finished)])
    assert "already holds the finished results" in bad_input(
        capsys, ["run", str(config), "--out", str(finished)]
    )
    assert "already finished" in bad_input(capsys, ["resume", str(finished)])
    assert snapshot(finished) == before

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.yaml").write_bytes((finished / "config.yaml").read_bytes())
    (corrupt / "state").mkdir()
    (corrupt / "state" / "checkpoint.json").write_text('{"format": "evoprune-exp')
    before = snapshot(corrupt)
    assert "corrupt" in bad_input(capsys, ["resume", str(corrupt)])
    (corrupt / "config.yaml").write_text("search: [1, 2")
    assert "corrupt" in bad_input(capsys, ["resume", str(corrupt)])
    assert "not a directory" in bad_input(capsys, ["resume", str(tmp_path / "missing")])
    assert "corrupt" not in str(snapshot(corrupt).keys() - before.keys())


def test_resume_of_a_truncated_journal_is_refused(tmp_path, capsys):
    config = write_config(tmp_path / "c.yaml")
    out = tmp_path / "out"
    experiment = Experiment(load_config(config), out, "fake-features", 64, InProcessEvaluator(FakeProblem()))
    experiment.start()
    for _ in range(4):
        experiment._step_loop_once()
    (out / "state" / "journal.jsonl").write_text("")
    assert "cannot be resumed" in bad_input(capsys, ["resume", str(out)])


def uninterrupted(tmp_path: Path, config_path: Path) -> list:
    out = tmp_path / "straight"
    assert cli(["run", str(config_path), "--workers", "0", "--out", str(out)]) == 0
    return read_evaluations(out)


def kill_then_resume(tmp_path: Path, config: Path, environment: dict, kill_at_rows: int) -> Path:
    """Start `evoprune run` in a process, SIGKILL it once the journal holds `kill_at_rows`, then resume."""
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "tests.coordinator.fake_cli"]
    process = subprocess.Popen(
        [*command, "run", str(config), "--workers", "0", "--out", str(out)],
        env=environment,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = out / "state" / "journal.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= kill_at_rows:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    assert journal.exists(), "the run did not start within the deadline"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "summary.json").exists()

    resumed = subprocess.run(
        [*command, "resume", str(out), "--workers", "0"],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    return out


@pytest.mark.parametrize("asynchronous", [False, True], ids=["steady-state", "asynchronous"])
def test_killed_run_resumes_to_the_uninterrupted_result_without_retraining(tmp_path, asynchronous):
    config = write_config(tmp_path / "c.yaml", max_evaluations=80, asynchronous=asynchronous)
    expected = uninterrupted(tmp_path, config)

    log = tmp_path / "trained.log"
    environment = {**os.environ, "FAKE_DELAY_S": "0.05", "FAKE_LOG": str(log), "PYTHONPATH": str(REPO)}
    out = kill_then_resume(tmp_path, config, environment, kill_at_rows=70)
    rows = read_evaluations(out)
    if asynchronous:
        # which duplicate counts as the cache hit may depend on timing; masks and objectives may not
        assert [r[:6] for r in comparable(rows)] == [r[:6] for r in comparable(expected)]
    else:
        assert comparable(rows) == comparable(expected)
    # both kinds of front, the final populations' included, come out as without the interruption
    assert pq.read_table(out / "front.parquet").equals(pq.read_table(tmp_path / "straight" / "front.parquet"))
    trained = log.read_text().split()
    assert len(trained) == len(set(trained)), "a mask was trained twice"
    assert len(trained) == sum(not r["cached"] for r in rows)


@pytest.mark.slow  # 22-31 s: the quick tier stays under 15 minutes on 2 cores
def test_killed_real_run_resumes_to_the_uninterrupted_result_without_retraining(tmp_path, monkeypatch):
    """The real digits features and batched trainer; only the process boundary is a test harness."""
    monkeypatch.setenv("FAKE_REAL", "1")
    config = tmp_path / "real.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "real-kill",
                "dataset": {"source": "sklearn:digits"},
                "ood": [{"source": "sklearn:sample_images"}],
                "backbone": {"name": "pixels", "weights": None},
                "training": {"max_epochs": 3},
                "search": {"population_size": 8, "max_evaluations": 24, "runs": 2, "seed": 3},
            }
        )
    )
    expected = uninterrupted(tmp_path, config)
    log = tmp_path / "trained.log"
    environment = {**os.environ, "FAKE_DELAY_S": "0", "FAKE_LOG": str(log), "PYTHONPATH": str(REPO)}
    out = kill_then_resume(tmp_path, config, environment, kill_at_rows=20)
    rows = read_evaluations(out)
    assert comparable(rows) == comparable(expected)
    trained = log.read_text().split()
    assert len(trained) == len(set(trained)), "a mask was trained twice"
    assert len(trained) == sum(not r["cached"] for r in rows)


def test_events_report_every_evaluation_and_the_end(tmp_path):
    config = parse_config({"name": "events", "search": SEARCH})
    bus = EventBus()
    seen = []
    bus.subscribe(seen.append)
    experiment = Experiment(
        config, tmp_path / "out", "fake-features", 64, InProcessEvaluator(FakeProblem()), bus
    )
    experiment.start()
    summary = experiment.run()
    kinds = [event.kind for event in seen]
    assert kinds.count("evaluation") == 120
    assert kinds.count("run-finished") == 2 and kinds[-1] == "succeeded"
    fronts = [event for event in seen if event.kind == "front" and event.run == -1]
    # live front events follow the archive fronts
    assert fronts[-1].hypervolume == pytest.approx(summary.aggregate.hypervolume_archive)
    assert np.all(np.diff([event.hypervolume for event in fronts]) >= -1e-12)


@pytest.mark.redis
def test_with_redis_a_second_experiment_on_the_same_features_trains_nothing(tmp_path, monkeypatch):
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("REDIS_URL", url)
    log = tmp_path / "trained.log"
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_FEATURE_KEY", f"fake-features-{uuid.uuid4().hex}")
    config = write_config(tmp_path / "c.yaml")
    assert cli(["run", str(config), "--workers", "0", "--out", str(tmp_path / "first")]) == 0
    trained_first = log.read_text().split()
    assert cli(["run", str(config), "--workers", "0", "--out", str(tmp_path / "second")]) == 0
    assert log.read_text().split() == trained_first, "the second experiment trained a mask again"
    first, second = read_evaluations(tmp_path / "first"), read_evaluations(tmp_path / "second")
    assert [r[:6] for r in comparable(first)] == [r[:6] for r in comparable(second)]
    assert all(row["cached"] for row in second)
    summary = Summary.read(tmp_path / "second" / "summary.json")
    assert summary.aggregate.trained == 0 and summary.fitness_cache and "redis" in summary.fitness_cache


def test_a_cancelled_experiment_keeps_its_results_and_resumes_to_the_uninterrupted_result(tmp_path):
    from evoprune.coordinator.results.directory import load_resumable

    config = parse_config({"name": "cancel", "search": SEARCH})
    straight = Experiment(
        config, tmp_path / "straight", "fake-features", 64, InProcessEvaluator(FakeProblem())
    )
    straight.start()
    straight.run()

    bus = EventBus()
    seen = []
    bus.subscribe(seen.append)
    out = tmp_path / "cancelled"
    experiment = Experiment(config, out, "fake-features", 64, InProcessEvaluator(FakeProblem()), bus)
    experiment.start()
    summary = experiment.run(should_stop=lambda: experiment.evaluations_done >= 50)
    assert summary.status == "cancelled"
    assert seen[-1].kind == "cancelled" and seen[-1].evaluations == experiment.evaluations_done
    kept = read_evaluations(out)
    assert 50 <= len(kept) < 120
    assert json.loads((out / "summary.json").read_text())["status"] == "cancelled"

    config_again, checkpoint = load_resumable(out)
    resumed = Experiment(config_again, out, "fake-features", 64, InProcessEvaluator(FakeProblem()))
    resumed.restore(checkpoint)
    assert resumed.run().status == "succeeded"
    assert comparable(read_evaluations(out)) == comparable(read_evaluations(tmp_path / "straight"))
    assert pq.read_table(out / "front.parquet").equals(pq.read_table(tmp_path / "straight" / "front.parquet"))


def test_the_population_front_is_the_final_populations_non_dominated_members(tmp_path):
    from evoprune.shared.masks import encode_mask
    from evoprune.shared.pareto import pareto_mask

    config = parse_config({"name": "fronts", "search": {**SEARCH, "population_size": 6}})
    experiment = Experiment(config, tmp_path / "out", "fake-features", 64, InProcessEvaluator(FakeProblem()))
    experiment.start()
    experiment.run()
    front = pq.read_table(tmp_path / "out" / "front.parquet").to_pylist()
    evaluated = read_evaluations(tmp_path / "out")
    union = []
    for run in range(2):
        masks, objectives = experiment._runs[run].search.population()
        distinct = {encode_mask(mask): tuple(point) for mask, point in zip(masks, objectives, strict=True)}
        points = np.array(list(distinct.values()))
        expected = {mask for mask, kept in zip(distinct, pareto_mask(points), strict=True) if kept}
        population = {r["mask"] for r in front if r["run"] == run and r["kind"] == "population"}
        assert population == expected
        union += [(mask, distinct[mask]) for mask in sorted(expected)]
        archive_rows = [r for r in evaluated if r["run"] == run]
        archive_points = np.array(
            [(1 - r["accuracy"], r["active_fraction"], 1 - r["auroc"]) for r in archive_rows]
        )
        archive = {
            r["mask"] for r, kept in zip(archive_rows, pareto_mask(archive_points), strict=True) if kept
        }
        assert {r["mask"] for r in front if r["run"] == run and r["kind"] == "archive"} == archive
    # the super Pareto front: the non-dominated union of the runs' population fronts
    by_mask = dict(union)
    kept = pareto_mask(np.array(list(by_mask.values())))
    assert {r["mask"] for r in front if r["run"] == -1 and r["kind"] == "population"} == {
        mask for mask, keep in zip(by_mask, kept, strict=True) if keep
    }


class SlowEvaluator(InProcessEvaluator):
    """Batches finish only after `batch_s`: a stand-in for a worker busy with a long training."""

    def __init__(self, batch_s: float) -> None:
        super().__init__(FakeProblem())
        self.batch_s = batch_s
        self.ready_at: dict[int, float] = {}
        self.results: dict[int, list] = {}

    def submit(self, masks):
        ticket = self._next_ticket()
        self.results[ticket] = FakeProblem().evaluate(masks)
        self.ready_at[ticket] = time.monotonic() + self.batch_s
        return ticket

    def _wait(self, timeout_s):
        first = min(self.ready_at.values())
        now = time.monotonic()
        pause = first - now if timeout_s is None else min(timeout_s, first - now)
        time.sleep(max(0.0, pause))
        done = [t for t, at in self.ready_at.items() if at <= time.monotonic()]
        for ticket in done:
            del self.ready_at[ticket]
        return {ticket: self.results.pop(ticket) for ticket in done}

    def pending(self):
        return len(self.ready_at)


def test_a_cancel_is_seen_within_seconds_while_a_batch_is_still_training(tmp_path):
    config = parse_config({"name": "slow", "search": SEARCH})
    experiment = Experiment(config, tmp_path / "out", "fake-features", 64, SlowEvaluator(batch_s=60.0))
    experiment.start()
    asked_at = time.monotonic() + 0.5
    started = time.monotonic()
    summary = experiment.run(should_stop=lambda: time.monotonic() > asked_at)
    assert summary.status == "cancelled"
    assert time.monotonic() - started < 5.0, "the cancel waited for the batch in flight"


def test_the_real_backend_refuses_a_config_without_ood_sources_by_name(tmp_path, capsys):
    from evoprune.coordinator.assembly import DEFAULT_BACKEND

    config = tmp_path / "no-ood.yaml"
    config.write_text(
        yaml.safe_dump({"dataset": {"source": "sklearn:digits"}, "backbone": {"name": "pixels"}})
    )
    args = build_parser().parse_args(["run", str(config), "--workers", "0", "--out", str(tmp_path / "out")])
    assert run_command(args, DEFAULT_BACKEND) == 2
    assert "ood: no out-of-distribution source" in capsys.readouterr().err
