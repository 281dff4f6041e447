"""A posted config may name server paths only under the server's allowed roots (issue 13)."""

import pytest

from evoprune.shared.config import parse_config
from tests.api.conftest import TINY_CONFIG, make_client


def config_with(**changes):
    return {**TINY_CONFIG, **changes}


def locations(answer):
    return [item["loc"] for item in answer.json()["detail"]]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dataset": {"source": "features:/proc/self/environ"}}, ["dataset", "source"]),
        ({"dataset": {"source": "folder:/"}}, ["dataset", "source"]),
        ({"ood": [{"source": "folder:/etc"}]}, ["ood", 0, "source"]),
        ({"cache_dir": "/tmp/evoprune-elsewhere"}, ["cache_dir"]),
        ({"backbone": {"name": "resnet50", "weights": "/etc/passwd"}}, ["backbone", "weights"]),
        ({"dataset": {"source": "folder:relative/data"}}, ["dataset", "source"]),
        ({"cache_dir": "~"}, ["cache_dir"]),
        # an MLflow store on the runner's disk is written like any other server path
        ({"tracking": {"mlflow_uri": "sqlite:////etc/mlflow.db"}}, ["tracking", "mlflow_uri"]),
        ({"tracking": {"mlflow_uri": "file:///root/mlruns"}}, ["tracking", "mlflow_uri"]),
    ],
)
def test_paths_outside_the_allowed_roots_are_a_422_naming_the_field(client, changes, field):
    answer = client.post("/experiments", json={"config": config_with(**changes)})
    assert answer.status_code == 422, answer.text
    assert ["body", "config", *field] in locations(answer)


def test_dot_dot_and_symbolic_links_are_judged_by_where_they_lead(client, tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True, exist_ok=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (data / "link").symlink_to(outside)
    escaping = client.post(
        "/experiments",
        json={"config": config_with(dataset={"source": f"folder:{data}/images/../../outside"})},
    )
    assert escaping.status_code == 422, escaping.text
    linked = client.post(
        "/experiments", json={"config": config_with(dataset={"source": f"folder:{data}/link"})}
    )
    assert linked.status_code == 422, linked.text
    inside = client.post(
        "/experiments", json={"config": config_with(dataset={"source": f"folder:{data}/images/../images"})}
    )
    assert inside.status_code == 201, inside.text


def test_the_datasets_cache_and_extra_roots_are_allowed(tmp_path, local_store, monkeypatch):
    datasets, cache, extra = tmp_path / "datasets", tmp_path / "cache", tmp_path / "extra"
    monkeypatch.setenv("EVOPRUNE_DATA", str(datasets))
    monkeypatch.setenv("EVOPRUNE_CACHE_DIR", str(cache))
    with make_client(tmp_path, local_store, allowed_roots=f"{extra}") as client:
        for changes in (
            {"dataset": {"source": f"folder:{datasets}/rps"}},
            {"cache_dir": f"{cache}/features"},
            {"ood": [{"source": f"features:{extra}/ood.parquet"}]},
            {"backbone": {"name": "resnet50", "weights": f"{extra}/weights.h5"}},
        ):
            answer = client.post("/experiments", json={"config": config_with(**changes)})
            assert answer.status_code == 201, (changes, answer.text)


def test_the_command_line_keeps_reading_any_path():
    config = parse_config(config_with(dataset={"source": "features:/proc/self/environ"}, cache_dir="/tmp/x"))
    assert config.dataset.source == "features:/proc/self/environ"
