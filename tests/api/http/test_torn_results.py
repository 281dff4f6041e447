"""A damaged results file is a 500 naming it, from the evaluations route and the artifact route alike."""

from __future__ import annotations

import secrets
import shutil

import pytest

from evoprune.shared.store import ExperimentRecord
from tests.api.conftest import make_client
from tests.coordinator.analysis.fixtures import session_results


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    results_dir, _, _ = session_results(tmp_path_factory.getbasetemp())
    return results_dir


@pytest.fixture
def app_client(tmp_path, local_store):
    with make_client(tmp_path, local_store) as client:
        yield client


def add_finished(client, source):
    experiment_id = secrets.token_hex(8)
    results_dir = client.app.state.settings.data_dir / "results" / experiment_id
    shutil.copytree(source, results_dir)
    record = ExperimentRecord(
        id=experiment_id, name="tiny", config={}, results_dir=str(results_dir), status="succeeded"
    )
    client.app.state.store.create(record)
    return experiment_id, results_dir


def flip(path, position):
    data = bytearray(path.read_bytes())
    data[position] ^= 0x04
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_a_damaged_evaluations_file_is_a_500_naming_it(app_client, finished, damage):
    experiment_id, results_dir = add_finished(app_client, finished)
    assert app_client.get(f"/experiments/{experiment_id}/evaluations").status_code == 200
    path = results_dir / "evaluations.parquet"
    if damage == "cut":
        path.write_bytes(path.read_bytes()[:-5])
    else:
        flip(path, path.stat().st_size // 2)
    for query in ("", "?format=parquet"):
        answer = app_client.get(f"/experiments/{experiment_id}/evaluations{query}")
        assert answer.status_code == 500
        detail = answer.json()["detail"]
        assert "evaluations.parquet is damaged" in detail and "run the experiment again" in detail
        assert str(results_dir) not in detail  # the server's paths stay on the server
    served = app_client.get(f"/experiments/{experiment_id}/artifacts/evaluations.parquet")
    assert served.status_code == 500 and "evaluations.parquet" in served.json()["detail"]


@pytest.mark.parametrize("name", ["front.parquet", "summary.json"])
def test_the_artifact_route_never_serves_a_cut_table_or_json_file(app_client, finished, name):
    experiment_id, results_dir = add_finished(app_client, finished)
    url = f"/experiments/{experiment_id}/artifacts/{name}"
    assert app_client.get(url).content == (results_dir / name).read_bytes()
    path = results_dir / name
    path.write_bytes(path.read_bytes()[:-5])
    answer = app_client.get(url)
    assert answer.status_code == 500
    assert f"{name} is damaged" in answer.json()["detail"]
