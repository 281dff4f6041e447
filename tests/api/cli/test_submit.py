import threading
import time

import pytest
import uvicorn
import yaml

from evoprune.api.cli.main import build_parser
from evoprune.api.client import ApiError, Client, parse_events
from evoprune.api.http.app import create_app
from evoprune.api.settings import Settings
from evoprune.coordinator.service.launcher import Launcher
from evoprune.coordinator.service.publishing import StorePublisher
from evoprune.shared.events import (
    EvaluationFinished,
    ExperimentCancelled,
    ExperimentStatus,
    ExperimentSucceeded,
    FrontChanged,
    StatusChanged,
)
from evoprune.shared.store_local import LocalStore
from tests.api.conftest import TINY_CONFIG, TOKEN
from tests.api.servers import free_port


class ScriptedLauncher(Launcher):
    """Plays a short experiment into the store from a thread (our collaborator, standing in for Ray)."""

    def __init__(self, store, outcome="succeeded"):
        self.store = store
        self.outcome = outcome

    def launch(self, record):
        def play():
            time.sleep(0.3)
            snapshot = self.store.snapshot(record.id)
            publisher = StorePublisher(self.store, snapshot.record, snapshot.front)
            publisher(StatusChanged(status=ExperimentStatus.RUNNING, started_at=time.time()))
            for step in range(3):
                publisher(EvaluationFinished(0, step, f"{step:02x}", (0.5, 0.5, 0.5), False, 0.1, "w"))
                publisher(FrontChanged(-1, ((0.5, 0.5, 0.5),), ("00",), 0.1, step + 1))
                publisher.flush()
                time.sleep(0.1)
            if self.outcome == "succeeded":
                publisher(ExperimentSucceeded(0.1, 3, 0, 0.5, record.results_dir))
            else:
                publisher(ExperimentCancelled(3, record.results_dir))
            publisher.flush()

        threading.Thread(target=play, daemon=True).start()

    def alive(self, experiment_id):
        return True


@pytest.fixture(params=["succeeded", "cancelled"])
def server(request, tmp_path):
    store = LocalStore(tmp_path / "data")
    settings = Settings(data_dir=tmp_path / "data", recover_on_start=False, api_token=TOKEN)
    app = create_app(settings, store, ScriptedLauncher(store, request.param))
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    while not instance.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", request.param
    instance.should_exit = True
    thread.join(timeout=10)


def submit(argv):
    args = build_parser().parse_args(["submit", *argv])
    return args.handler(args)


def test_submit_and_follow_exits_by_the_final_status(server, tmp_path, capsys, monkeypatch):
    url, outcome = server
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_CONFIG))
    monkeypatch.setenv("EVOPRUNE_API_TOKEN", TOKEN)
    code = submit([str(config), "--url", url, "--follow"])
    out, err = capsys.readouterr()
    assert code == (0 if outcome == "succeeded" else 1)
    assert len(out.strip()) == 16
    assert "[3/24]" in err and err.strip().splitlines()[-1].startswith(outcome)


def test_submit_reports_bad_input_and_auth(server, tmp_path, capsys, monkeypatch):
    url, _ = server
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  runs: 0\n  populaton_size: 3\n")
    monkeypatch.setenv("EVOPRUNE_API_TOKEN", TOKEN)
    assert submit([str(bad), "--url", url]) == 2
    err = capsys.readouterr().err
    assert "422" in err and "search.runs" in err and "search.populaton_size: unknown key" in err
    monkeypatch.delenv("EVOPRUNE_API_TOKEN")
    assert submit([str(bad), "--url", url]) == 2
    assert "401" in capsys.readouterr().err
    assert submit([str(tmp_path / "missing.yaml"), "--url", url]) == 2
    assert submit([str(bad), "--url", "http://127.0.0.1:1"]) == 1


def test_python_client_example(server):
    url, outcome = server
    client = Client(url, token=TOKEN)
    experiment_id = client.submit(config=TINY_CONFIG, name="from python")
    kinds = [event.event for event in client.events(experiment_id)]
    assert kinds[0] == "snapshot" and kinds[-1] == "done"
    assert client.experiment(experiment_id)["status"] == outcome
    assert client.front(experiment_id)["hypervolume_history"]
    assert client.evaluations(experiment_id)["total"] == 3
    # the scripted runner writes no results directory: the listing is empty and there is nothing to analyse
    listing = client.artifacts(experiment_id)
    assert listing["analysis"]["status"] == "none"
    with pytest.raises(ApiError) as missing:
        client.artifact(experiment_id, "front.png")
    assert missing.value.status == 404
    with pytest.raises(ApiError) as refused:
        client.analyse(experiment_id, top=5)
    assert refused.value.status == 409


def test_parse_events():
    raw = b'id: 1\nevent: front\ndata: {"a": 1}\n\n: keep-alive\n\nevent: done\ndata: x\n\n'
    events = list(parse_events(raw.splitlines(keepends=True)))
    assert [(e.event, e.data, e.id) for e in events] == [("front", {"a": 1}, "1"), ("done", "x", None)]
