import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from evoprune.coordinator.assembly import RunSettings, run_experiment
from evoprune.coordinator.results.directory import load_resumable
from evoprune.coordinator.results.fronts import AGGREGATE_RUN
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.results.summary import Summary
from evoprune.coordinator.tracking import StepRecorder, retry_delay_s
from evoprune.coordinator.tracking_mlflow import MAX_PARAM_VALUE_CHARS, config_params
from evoprune.shared.config import ConfigError, demo_config_path, load_config, parse_config
from evoprune.shared.events import EvaluationFinished, EventBus
from evoprune.shared.pareto import ParetoArchive
from tests.coordinator.fake_cli import BACKEND

START_TIMEOUT_S = 180
FAKE_SEARCH = {"population_size": 10, "max_evaluations": 40, "runs": 2, "seed": 7}
LOGGER = "evoprune.coordinator.tracking"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` on loopback: SQLite store and artifacts in a temporary folder."""
    pytest.importorskip("sqlalchemy", reason="the test extra's MLflow server dependencies are not installed")
    pytest.importorskip("mlflow", reason="the test extra's mlflow-skinny is not installed")
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log_file = (root / "server.log").open("wb")
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    # a session of its own: the server's worker processes end with it
    # without its job runners (eight huey processes, for GenAI jobs that tracking never asks for)
    environment = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(
        command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True, env=environment
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        import requests

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(
                    f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}"
                )
            time.sleep(0.2)
        yield uri
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # uvicorn's workers can be slow to go on a busy machine
            process.wait(timeout=15)
        log_file.close()


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri, experiment_name):
    """(parent, children by run index) of the one experiment run that MLflow experiment holds."""
    client = _client(uri)
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [run for run in runs if run.data.tags.get("evoprune.kind") == "experiment"]
    assert len(parents) == 1, [run.data.tags for run in runs]
    children = {int(run.data.tags["evoprune.run"]): run for run in runs if run is not parents[0]}
    for child in children.values():
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    return parents[0], children


def _history(uri, run_id, key):
    return [(metric.step, metric.value) for metric in sorted(_client(uri).get_metric_history(run_id, key),
                                                             key=lambda metric: metric.step)]  # fmt: skip


def _expected_points(rows, runs):
    """Per run and for all runs (AGGREGATE_RUN): [(evaluations, hypervolume, best accuracy)] after each step,
    recomputed from evaluations.parquet's rows in the order they were journaled."""
    archives = {run: ParetoArchive() for run in [*range(runs), AGGREGATE_RUN]}
    counts = dict.fromkeys(archives, 0)
    best = dict.fromkeys(archives, 0.0)
    points = {run: [] for run in archives}
    steps = []
    for row in rows:
        if not steps or steps[-1][0] != (row["run"], row["step"]):
            steps.append(((row["run"], row["step"]), []))
        steps[-1][1].append(row)
    for (run, _), members in steps:
        for row in members:
            for target in (run, AGGREGATE_RUN):
                counts[target] += 1
                point = np.array([[1 - row["accuracy"], row["active_fraction"], 1 - row["auroc"]]])
                archives[target].add(point, [row["mask"]])
                best[target] = max(best[target], row["accuracy"])
        for target in (run, AGGREGATE_RUN):
            points[target].append((counts[target], archives[target].hypervolume, best[target]))
    return points


def _assert_metrics_follow_the_rows(uri, parent, children, rows, runs):
    expected = _expected_points(rows, runs)
    for run, run_id in [
        (AGGREGATE_RUN, parent.info.run_id),
        *((i, c.info.run_id) for i, c in children.items()),
    ]:
        hypervolume = _history(uri, run_id, "hypervolume")
        accuracy = _history(uri, run_id, "best_accuracy")
        assert [step for step, _ in hypervolume] == [point[0] for point in expected[run]], run
        assert [value for _, value in hypervolume] == pytest.approx(
            [point[1] for point in expected[run]], abs=1e-12
        )
        assert accuracy == [(point[0], pytest.approx(point[2], abs=1e-12)) for point in expected[run]]


def _journal_rows(out):
    # the journal keeps the order steps were told in (evaluations.parquet is sorted by run)
    return [json.loads(line) for line in ResultsLayout(out).journal.read_text().splitlines()]


# ---- the parts, without a server --------------------------------------------------------------------------


def test_the_config_wins_over_mlflows_variable_and_secrets_stay_out_of_it():
    environ = {"MLFLOW_TRACKING_URI": "http://from-env:5000", "MLFLOW_EXPERIMENT_NAME": "env-experiment"}
    assert parse_config({}).tracking.uri(environ) == "http://from-env:5000"
    assert parse_config({}).tracking.uri({}) is None
    named = parse_config({"name": "x", "tracking": {"mlflow_uri": "http://config:5000"}}).tracking
    assert named.uri(environ) == "http://config:5000"
    assert named.experiment_name("x", environ) == "env-experiment"
    assert named.experiment_name("x", {}) == "x"
    assert parse_config({"tracking": {"enabled": False}}).tracking.uri(environ) is None
    with pytest.raises(ConfigError, match=r"tracking\.mlflow_uri[\s\S]*MLFLOW_TRACKING_PASSWORD"):
        parse_config({"tracking": {"mlflow_uri": "https://user:secret@host/"}})
    with pytest.raises(ConfigError, match=r"tracking\.mlflow_uri"):
        parse_config({"tracking": {"mlflow_uri": "http://a b"}})
    # tracking is not what the experiment is: the fingerprint (resume, results-directory checks) ignores it
    plain = parse_config({"name": "x"})
    assert (
        named != plain.tracking
        and plain.stable_dump()
        == parse_config({"name": "x", "tracking": {"mlflow_uri": "http://config:5000"}}).stable_dump()
    )
    assert "tracking" not in plain.stable_dump()


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        ("http://127.0.0.1:5000", None),
        ("databricks", None),
        ("file:///srv/mlruns", "/srv/mlruns"),
        ("sqlite:////srv/mlflow.db", "/srv/mlflow.db"),
        ("sqlite:///mlflow.db", "mlflow.db"),
        ("/srv/mlruns", "/srv/mlruns"),
    ],
)
def test_a_local_store_is_named_as_a_path(uri, path):
    assert parse_config({"tracking": {"mlflow_uri": uri}}).tracking.local_store_path() == path


def test_params_are_the_flattened_resolved_config_within_mlflows_limits():
    config = load_config(demo_config_path()).model_copy(update={"name": "n" * 10_000})
    params = config_params(config)
    assert params["search.population_size"] == "30"
    assert params["backbone.name"] == "pixels" and params["backbone.weights"] == "null"
    assert params["head.layers"] == "[512]"
    assert params["ood.0.source"] == "sklearn:sample_images"
    assert params["search.constraints.min_accuracy"] == "null"
    assert len(params["name"]) == MAX_PARAM_VALUE_CHARS
    assert not any(key.startswith("tracking") for key in params)


def _event(run, step, accuracy, mask, fidelity=1.0):
    return EvaluationFinished(run=run, step=step, mask=mask, objectives=(accuracy, 0.5, 0.7), cached=False,
                              seconds=0.0, worker="w", fidelity=fidelity)  # fmt: skip


def test_one_point_per_step_for_its_run_and_for_all_runs():
    recorder = StepRecorder(runs=2)
    assert recorder.record(_event(0, 0, 0.5, "a")) == []
    assert recorder.record(_event(0, 0, 0.6, "b")) == []
    points = recorder.record(_event(1, 0, 0.9, "c"))  # run 0's step 0 is complete
    assert [(p.run, p.step, p.metrics["best_accuracy"]) for p in points] == [
        (0, 2, 0.6),
        (AGGREGATE_RUN, 2, 0.6),
    ]
    # a screened-out mask counts as an evaluation but enters no front and no best accuracy
    assert recorder.record(_event(1, 0, 0.99, "d", fidelity=0.2)) == []
    points = recorder.flush()
    assert [(p.run, p.step, p.metrics["best_accuracy"]) for p in points] == [
        (1, 2, 0.9),
        (AGGREGATE_RUN, 4, 0.9),
    ]
    assert points[0].metrics["front_size"] == 1.0
    assert recorder.flush() == []
    assert [retry_delay_s(n) for n in (1, 2, 3, 6, 50)] == [1.0, 2.0, 4.0, 30.0, 30.0]


# ---- against a real server --------------------------------------------------------------------------------


def _fake_config(uri, experiment, **search):
    tracking = {"mlflow_uri": uri, "mlflow_experiment": experiment} if uri else {}
    return parse_config({"name": "fake", "search": {**FAKE_SEARCH, **search}, "tracking": tracking})


def _run_fake(config, out, should_stop=None, checkpoint=None):
    return run_experiment(config, out, RunSettings(workers=0), EventBus(), checkpoint, BACKEND,
                          should_stop=should_stop)  # fmt: skip


@pytest.mark.slow
@pytest.mark.mlflow
def test_the_demo_is_tracked_as_a_parent_run_with_a_child_per_execution(mlflow_server, tmp_path, capsys):
    experiment = f"demo-{uuid.uuid4().hex[:8]}"
    data = load_config(demo_config_path()).model_dump(mode="json")
    data["training"]["max_epochs"] = 2
    data["search"].update(population_size=6, max_evaluations=10, runs=2)
    data["tracking"] = {"mlflow_uri": mlflow_server, "mlflow_experiment": experiment}
    config = parse_config(data)
    out = tmp_path / "demo"
    summary = run_experiment(config, out, RunSettings(workers=0), EventBus())
    assert capsys.readouterr().out == ""  # `evoprune run` prints the results directory there, nothing else
    parent, children = _runs(mlflow_server, experiment)
    assert parent.info.status == "FINISHED" and sorted(children) == [0, 1]
    assert all(child.info.status == "FINISHED" for child in children.values())
    assert parent.data.params == config_params(config)
    assert (
        parent.data.params["backbone.name"] == "pixels"
        and parent.data.params["search.population_size"] == "6"
    )
    assert {run: child.data.params for run, child in children.items()} == {
        run: {"run": str(run), "seed": str(config.search.seed + run)} for run in (0, 1)
    }
    rows = _journal_rows(out)
    _assert_metrics_follow_the_rows(mlflow_server, parent, children, rows, runs=2)
    assert [step for step, _ in _history(mlflow_server, children[0].info.run_id, "hypervolume")] == [6, 8, 10]
    assert _history(mlflow_server, parent.info.run_id, "hypervolume")[-1][1] == pytest.approx(
        summary.aggregate.hypervolume_archive, abs=1e-12
    )
    assert parent.data.metrics["final.hypervolume_population"] == pytest.approx(
        summary.aggregate.hypervolume_population
    )
    assert children[1].data.metrics["final.evaluations"] == 10
    names = {item.path for item in _client(mlflow_server).list_artifacts(parent.info.run_id)}
    assert {"config.yaml", "summary.json", "front.parquet", "evaluations.parquet", "front.png",
            "hypervolume.png"} <= names  # fmt: skip
    copy = _client(mlflow_server).download_artifacts(parent.info.run_id, "summary.json", str(tmp_path))
    assert Path(copy).read_bytes() == (out / "summary.json").read_bytes()
    record = json.loads(ResultsLayout(out).tracking.read_text())
    assert record["parent_run_id"] == parent.info.run_id
    assert record["child_run_ids"] == {str(run): child.info.run_id for run, child in children.items()}
    assert pq.read_table(out / "evaluations.parquet").num_rows == 20


# slow with the demo's test: one server start (~18 s) serves both, in the slow tier
@pytest.mark.slow
@pytest.mark.mlflow
def test_a_resumed_experiment_continues_its_runs_with_no_step_twice(mlflow_server, tmp_path):
    whole, parted = f"whole-{uuid.uuid4().hex[:8]}", f"parted-{uuid.uuid4().hex[:8]}"
    _run_fake(_fake_config(mlflow_server, whole), tmp_path / "whole")
    out = tmp_path / "parted"
    polls = iter(range(1000))
    cancelled = _run_fake(_fake_config(mlflow_server, parted), out, should_stop=lambda: next(polls) >= 6)
    assert cancelled.status == "cancelled"
    before, children_before = _runs(mlflow_server, parted)
    assert before.info.status == "KILLED"
    config, checkpoint = load_resumable(out)
    _run_fake(config, out, checkpoint=checkpoint)
    parent, children = _runs(mlflow_server, parted)
    # the same runs, now finished, holding each step once: exactly what the uninterrupted experiment holds
    assert parent.info.run_id == before.info.run_id and parent.info.status == "FINISHED"
    assert {run: child.info.run_id for run, child in children.items()} == {
        run: child.info.run_id for run, child in children_before.items()
    }
    reference, reference_children = _runs(mlflow_server, whole)
    for key in ("hypervolume", "best_accuracy", "front_size"):
        for mine, theirs in [(parent, reference), *((children[i], reference_children[i]) for i in children)]:
            assert _history(mlflow_server, mine.info.run_id, key) == _history(
                mlflow_server, theirs.info.run_id, key
            )
    _assert_metrics_follow_the_rows(mlflow_server, parent, children, _journal_rows(out), runs=2)


def test_a_server_that_is_down_changes_no_result_and_is_reported_once(tmp_path, caplog):
    pytest.importorskip("mlflow", reason="the test extra's mlflow-skinny is not installed")
    closed = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    plain = _run_fake(_fake_config(None, None), tmp_path / "plain")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        tracked = _run_fake(_fake_config(closed, "never"), tmp_path / "tracked")
    warnings = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert len(warnings) == 2, warnings
    assert "cannot be reached" in warnings[0] and "the experiment goes on" in warnings[0]
    assert "was not reached before the experiment ended" in warnings[1]
    for name in ("evaluations.parquet", "front.parquet"):
        assert pq.read_table(tmp_path / "tracked" / name).equals(pq.read_table(tmp_path / "plain" / name))
    strip = {"wall_time_s", "versions", "fitness_cache"}  # the last names the directory's own ledger
    tracked_summary = Summary.read(tmp_path / "tracked" / "summary.json").to_dict()
    plain_summary = Summary.read(tmp_path / "plain" / "summary.json").to_dict()
    assert {k: v for k, v in tracked_summary.items() if k not in strip} == {
        k: v for k, v in plain_summary.items() if k not in strip
    }
    assert tracked.aggregate == plain.aggregate
    assert not ResultsLayout(tmp_path / "tracked").tracking.exists()  # no run was ever created


@pytest.mark.slow
@pytest.mark.mlflow
def test_the_service_runner_tracks_the_experiments_it_runs(mlflow_server, tmp_path):
    from evoprune.coordinator.assembly import Backend
    from evoprune.coordinator.evaluator_interface import InProcessEvaluator
    from evoprune.coordinator.service.runner import RunnerSpec, run_service_experiment
    from evoprune.shared.store import ExperimentRecord, RunProgress, StoreSpec
    from evoprune.shared.store_local import LocalStore
    from tests.coordinator.fakes import FakeProblem, fake_feature_set

    experiment, experiment_id = f"service-{uuid.uuid4().hex[:8]}", "00000000000000ab"
    store = LocalStore(tmp_path)
    out = tmp_path / "results" / experiment_id
    tracking = {"mlflow_uri": mlflow_server, "mlflow_experiment": experiment}
    store.create(
        ExperimentRecord(
            id=experiment_id,
            name="fake",
            config={"name": "fake", "search": FAKE_SEARCH, "tracking": tracking},
            results_dir=str(out),
            evaluations_total=FAKE_SEARCH["runs"] * FAKE_SEARCH["max_evaluations"],
            runs=[
                RunProgress(
                    run=run, seed=FAKE_SEARCH["seed"] + run, evaluations_total=FAKE_SEARCH["max_evaluations"]
                )
                for run in range(FAKE_SEARCH["runs"])
            ],
        )
    )
    backend = Backend(
        load_features=lambda config, settings: fake_feature_set(64),
        make_evaluator=lambda feature_set, config, settings: InProcessEvaluator(FakeProblem()),
    )
    spec = RunnerSpec(experiment_id=experiment_id, store=StoreSpec(data_dir=str(tmp_path)))
    assert run_service_experiment(spec, backend, store) == "succeeded"
    parent, children = _runs(mlflow_server, experiment)
    assert parent.info.status == "FINISHED" and sorted(children) == [0, 1]
    assert all(child.info.status == "FINISHED" for child in children.values())
    _assert_metrics_follow_the_rows(mlflow_server, parent, children, _journal_rows(out), runs=2)
    assert "summary.json" in {item.path for item in _client(mlflow_server).list_artifacts(parent.info.run_id)}
