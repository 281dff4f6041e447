"""POST /experiments/{id}/exports of an ensemble: the job gets its window or masks; bad ones answer 422."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from evoprune.coordinator.results.layout import ResultsLayout
from tests.api.http.test_exports import _post, finished  # noqa: F401 (a fixture)


def test_a_window_ensemble_starts_the_export_actor_with_its_window(finished):  # noqa: F811
    client, launcher, record = finished
    answer = _post(client, record, {"ensemble": "50-100", "formats": ["tflite"]})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["status"] == "running" and body["name"] == "ensemble-mean-50-100"
    assert body["options"] == {
        "mask": None,
        "rule": None,
        "min_accuracy": None,
        "run": -1,
        "kind": "population",
        "formats": ["keras", "tflite"],
        "quantize": None,
        "ensemble": "50-100",
        "ensemble_masks": None,
        "combine": "mean",
    }
    (spec,) = launcher.exports
    assert (spec.ensemble, spec.ensemble_masks, spec.combine) == ("50-100", None, "mean")
    assert spec.request().of_ensemble()["window"] == "50-100"


def test_listed_masks_start_a_vote_ensemble_under_a_name_of_their_own(finished):  # noqa: F811
    client, launcher, record = finished
    masks = pq.read_table(ResultsLayout(Path(record.results_dir)).front).column("mask").to_pylist()[:2]
    answer = _post(client, record, {"ensemble_masks": [mask.upper() for mask in masks], "combine": "vote"})
    assert answer.status_code == 202, answer.text
    assert answer.json()["name"].startswith("ensemble-vote-masks-")
    (spec,) = launcher.exports
    assert spec.ensemble_masks == tuple(masks) and spec.combine == "vote"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"ensemble": "95-90"}, "ensemble", "0 <= LOWER <= UPPER <= 100"),
        ({"ensemble": "5-6"}, "ensemble", "holds no member"),
        ({"ensemble": "90"}, "ensemble", "pattern"),
        ({"ensemble_masks": ["zz"]}, "ensemble_masks", "pattern"),
        ({"ensemble_masks": []}, "ensemble_masks", ""),
        ({"ensemble_masks": ["00" * 8]}, "ensemble_masks", "never evaluated"),
        ({"ensemble": "50-100", "pick": "knee"}, "ensemble", "one of them"),
        ({"pick": "knee", "combine": "vote"}, "combine", "only to ensemble"),
        ({"ensemble": "50-100", "run": 0}, "run", "does not apply to an ensemble"),
        ({"ensemble": "50-100", "combine": "median"}, "combine", ""),
    ],
)
def test_bad_ensemble_requests_answer_422_naming_the_field(finished, body, field, words):  # noqa: F811
    client, launcher, record = finished
    answer = _post(client, record, body)
    assert answer.status_code == 422, answer.text
    assert field in json.dumps(answer.json()) and words in json.dumps(answer.json()), answer.text
    assert launcher.exports == []
