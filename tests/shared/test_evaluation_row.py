"""The evaluation row: its minimisation vector, its event and its journal form."""

import json

from evoprune.shared.evaluation_row import EvaluationRow
from evoprune.shared.objectives import Evaluation

ROW = EvaluationRow(
    run=1,
    step=4,
    slot=0,
    key="k",
    mask="f0",
    mask_length=8,
    accuracy=0.9,
    active_fraction=0.5,
    auroc=0.75,
    cached=False,
    seconds=2.0,
    worker="worker-0",
    test_accuracy=0.8,
)


def test_the_minimisation_vector_is_the_evaluations():
    evaluation = ROW.evaluation()
    assert ROW.minimisation() == evaluation.minimisation() == (1.0 - 0.9, 0.5, 1.0 - 0.75)
    assert evaluation == Evaluation(0.9, 0.5, 0.75, test_accuracy=0.8, seconds=2.0, worker="worker-0")


def test_the_event_announces_the_row():
    event = ROW.event()
    assert (event.run, event.step, event.mask, event.objectives) == (1, 4, "f0", (0.9, 0.5, 0.75))
    assert (event.cached, event.seconds, event.worker) == (False, 2.0, "worker-0")


def test_journal_round_trip_keeps_the_column_order():
    data = json.loads(json.dumps(ROW.to_dict()))
    assert list(data)[:6] == ["run", "step", "slot", "key", "mask", "mask_length"]
    assert EvaluationRow.from_dict(data) == ROW
