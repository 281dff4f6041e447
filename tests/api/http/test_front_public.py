"""The population front of GET /front: read with the stored search section alone, never the whole config."""

from __future__ import annotations

from pathlib import Path

import pytest

from evoprune.api.http.schemas import FrontPublic
from evoprune.coordinator.evaluator_interface import InProcessEvaluator
from evoprune.coordinator.experiment import Experiment
from evoprune.shared.config import parse_config
from evoprune.shared.store import ExperimentRecord
from tests.coordinator.fakes import FakeProblem

CONFIG = {
    "name": "front",
    "ood": [{"source": "sklearn:sample_images"}],
    "search": {"population_size": 6, "max_evaluations": 12, "runs": 2, "seed": 0},
}


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("front") / "results"
    experiment = Experiment(parse_config(CONFIG), folder, "fake", 64, InProcessEvaluator(FakeProblem()))
    experiment.start()
    experiment.run()
    return folder


def _record(config: dict, results_dir: Path) -> ExperimentRecord:
    return ExperimentRecord(id="e1", name="front", config=config, results_dir=str(results_dir))


def test_the_population_front_is_read_from_the_checkpoint(results_dir):
    stored = parse_config(CONFIG).model_dump(mode="json")
    front = FrontPublic.of_population(_record(stored, results_dir), history=[])
    assert front.kind == "population" and front.hypervolume > 0
    assert {point.run for point in front.points} == {-1, 0, 1}


def test_a_section_other_than_search_that_no_longer_validates_hides_nothing(results_dir):
    # a record from another version: its dataset section has a key this version does not know
    stored = parse_config(CONFIG).model_dump(mode="json")
    expected = FrontPublic.of_population(_record(stored, results_dir), history=[])
    stored["dataset"] = {**stored["dataset"], "retired_option": True}
    assert FrontPublic.of_population(_record(stored, results_dir), history=[]) == expected


def test_a_search_that_no_longer_validates_has_no_population_to_read(results_dir):
    stored = parse_config(CONFIG).model_dump(mode="json")
    stored["search"] = {**stored["search"], "retired_option": True}
    front = FrontPublic.of_population(_record(stored, results_dir), history=[])
    assert front.points == [] and front.hypervolume == 0
