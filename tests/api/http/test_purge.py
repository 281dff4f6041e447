"""DELETE ?purge=true removes an ended experiment and its results; active ones and busy ones are kept."""

from __future__ import annotations

import threading
import time

import pytest
import uvicorn

from evoprune.api.client import ApiError, Client
from evoprune.api.http.app import create_app
from evoprune.api.settings import Settings
from evoprune.coordinator.results.layout import ResultsLayout
from evoprune.coordinator.service.records import restore_lost_records, write_record_copy
from evoprune.shared.events import ExperimentStatus
from evoprune.shared.store import FrontState
from evoprune.shared.store_local import LocalStore
from tests.api.conftest import TINY_CONFIG, TOKEN, RecordingLauncher, make_client
from tests.api.servers import free_port


def submit(client) -> str:
    answer = client.post("/experiments", json={"config": TINY_CONFIG})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def end(client, experiment_id, status=ExperimentStatus.FAILED):
    """Mark the experiment ended as its runner would, with a results directory and its record copy."""
    store = client.app.state.store
    client.app.state.launcher.running.discard(experiment_id)
    record = store.get(experiment_id)
    record.status = status
    record.last_event_seq += 1
    store.publish(experiment_id, [(record.last_event_seq, {"type": status.value})], record)
    layout = ResultsLayout(client.app.state.settings.store_spec().results_root / experiment_id)
    layout.root.mkdir(parents=True, exist_ok=True)  # POST wrote the record copy there already
    (layout.root / "summary.json").write_text("{}")
    write_record_copy(layout, record, FrontState())
    return layout.root


def test_an_ended_experiment_and_its_results_are_removed(client):
    kept = submit(client)
    experiment_id = submit(client)
    results = end(client, experiment_id)
    answer = client.delete(f"/experiments/{experiment_id}", params={"purge": "true"})
    assert answer.status_code == 204 and answer.content == b""
    assert not results.exists()
    assert client.get(f"/experiments/{experiment_id}").status_code == 404
    assert client.get(f"/experiments/{experiment_id}/events").status_code == 404
    listed = client.get("/experiments").json()
    assert [entry["id"] for entry in listed["experiments"]] == [kept] and listed["total"] == 1
    # nothing is left behind to bring it back (the copy a lost store is rebuilt from went with it)
    spec = client.app.state.settings.store_spec()
    assert restore_lost_records(client.app.state.store, spec) == []
    assert [path.name for path in spec.results_root.iterdir()] == [kept]  # POST wrote its record copy
    assert client.delete(f"/experiments/{experiment_id}", params={"purge": "true"}).status_code == 404


def test_a_queued_or_running_experiment_is_kept_and_the_answer_says_why(client):
    experiment_id = submit(client)
    answer = client.delete(f"/experiments/{experiment_id}", params={"purge": "true"})
    assert answer.status_code == 409
    assert "is queued: cancel it first" in answer.json()["detail"]
    assert client.get(f"/experiments/{experiment_id}").json()["status"] == "queued"
    # its runner has not yet gone after publishing its end: its last writes could bring it back
    end(client, experiment_id, ExperimentStatus.CANCELLED)
    client.app.state.launcher.running.add(experiment_id)
    answer = client.delete(f"/experiments/{experiment_id}", params={"purge": "true"})
    assert answer.status_code == 409 and "runner is still finishing" in answer.json()["detail"]
    client.app.state.launcher.running.discard(experiment_id)
    client.app.state.launcher.exporting.add(experiment_id)
    answer = client.delete(f"/experiments/{experiment_id}", params={"purge": "true"})
    assert answer.status_code == 409 and "is being exported" in answer.json()["detail"]
    client.app.state.launcher.exporting.discard(experiment_id)
    assert client.delete(f"/experiments/{experiment_id}", params={"purge": "true"}).status_code == 204


def test_without_purge_delete_still_cancels_and_an_ended_one_points_to_purge(client):
    experiment_id = submit(client)
    client.app.state.launcher.running.discard(experiment_id)  # its runner gone, a cancel ends it at once
    assert client.delete(f"/experiments/{experiment_id}").json()["status"] == "cancelled"
    answer = client.delete(f"/experiments/{experiment_id}")
    assert answer.status_code == 409 and "?purge=true" in answer.json()["detail"]


def test_purge_needs_the_token_and_a_known_id(tmp_path, local_store):
    with make_client(tmp_path, local_store, api_token=TOKEN) as client:
        good = {"Authorization": f"Bearer {TOKEN}"}
        answer = client.post("/experiments", json={"config": TINY_CONFIG}, headers=good)
        experiment_id = answer.json()["id"]
        end(client, experiment_id)
        assert client.delete(f"/experiments/{experiment_id}?purge=true").status_code == 401
        assert client.get(f"/experiments/{experiment_id}", headers=good).status_code == 200
        unknown = client.delete("/experiments/0123456789abcdef?purge=true", headers=good)
        assert unknown.status_code == 404


@pytest.fixture
def server(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", recover_on_start=False, api_token=TOKEN)
    app = create_app(settings, LocalStore(tmp_path / "data"), RecordingLauncher())
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield app, f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(timeout=10)


def test_the_python_client_deletes(server):
    app, url = server
    client = Client(url, token=TOKEN)
    experiment_id = client.submit(config=TINY_CONFIG)
    with pytest.raises(ApiError) as refused:
        client.delete(experiment_id)
    assert refused.value.status == 409 and "cancel it first" in str(refused.value)
    app.state.launcher.running.discard(experiment_id)  # its runner gone, a cancel ends it at once
    assert client.cancel(experiment_id)["status"] == "cancelled"
    assert client.delete(experiment_id) is None
    with pytest.raises(ApiError) as gone:
        client.experiment(experiment_id)
    assert gone.value.status == 404
