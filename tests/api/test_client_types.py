"""The client's typed responses name exactly the fields of the server's response models."""

import typing

import pytest

from evoprune.api import client
from evoprune.api.http import schemas

PAIRS = [
    (client.RunView, schemas.RunPublic),
    (client.ExperimentView, schemas.ExperimentPublic),
    (client.FrontPointView, schemas.FrontPoint),
    (client.FrontSummaryView, schemas.FrontSummary),
    (client.HypervolumePointView, schemas.HypervolumePoint),
    (client.FrontView, schemas.FrontPublic),
    (client.EvaluationView, schemas.EvaluationPublic),
    (client.EvaluationPage, schemas.EvaluationList),
    (client.AnalysisView, schemas.AnalysisPublic),
    (client.ArtifactView, schemas.ArtifactPublic),
    (client.ArtifactListing, schemas.ArtifactList),
]


@pytest.mark.parametrize(("view", "model"), PAIRS, ids=[view.__name__ for view, _ in PAIRS])
def test_each_typed_response_has_its_models_fields_in_order(view, model):
    assert list(typing.get_type_hints(view)) == list(model.model_fields)
