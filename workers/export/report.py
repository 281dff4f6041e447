"""What export.json holds, as types: the recorded mask, the checks, the heads' sizes and latencies."""

from __future__ import annotations

from typing import Generic, Literal, NotRequired, TypedDict, TypeVar

from evoprune.workers.export.formats import DeployReport

T = TypeVar("T")
# the two ways a head's latency is timed: one image per call, and a batch per call (per image)
BatchKey = Literal["single_ms", "batched_ms"]
BATCH_KEYS: tuple[BatchKey, ...] = ("single_ms", "batched_ms")


class RecordedRow(TypedDict):
    """The mask to export as the search recorded it: a row of front.parquet or evaluations.parquet.

    The row may hold more columns (run, mask_length, ...); an export reads these.
    """

    mask: str
    accuracy: float
    active_fraction: float
    auroc: float
    test_accuracy: NotRequired[float | None]
    test_auroc: NotRequired[float | None]


def recorded_objectives(row: RecordedRow) -> dict[str, float]:
    """export.json's `objectives` of a recorded row: accuracy, active_fraction, auroc, then the test scores.

    The test scores are left out where the search has none. A plain mapping of name to value: the export
    job's status file holds it as one, beside an ensemble's accuracy and AUROC.
    """
    objectives = {
        "accuracy": row["accuracy"],
        "active_fraction": row["active_fraction"],
        "auroc": row["auroc"],
    }
    test_accuracy, test_auroc = row.get("test_accuracy"), row.get("test_auroc")
    if test_accuracy is not None:
        objectives["test_accuracy"] = test_accuracy
    if test_auroc is not None:
        objectives["test_auroc"] = test_auroc
    return objectives


class InputInfo(TypedDict):
    """What the exported model reads."""

    kind: str  # images or features
    shape: list[int]
    pixel_max: float | None


class FoldInfo(TypedDict):
    """The fold whose heads are exported, of how many, and why that one."""

    exported: int
    folds: int
    why: str


class Comparison(TypedDict):
    """A reloaded model's predictions against the search's logits (workers.export._check)."""

    samples: int
    retrained_accuracy: float
    exported_accuracy: float
    exact: bool
    disagreements: int
    unexplained: int  # predictions that differ other than at a near-tie of two classes
    max_probability_difference: float
    reproduced: bool


class ExportCheck(Comparison):
    """The reloaded .keras file of one member against its re-trained head, on the fitness split."""

    split: str
    recorded_accuracy: float


class EnsembleCheck(Comparison):
    """The reloaded .keras file of an ensemble against its heads combined, on the fitness split."""

    split: str
    combine: str


class BeforeAfter(TypedDict, Generic[T]):
    """A figure of the unpruned head and of the pruned one."""

    before: T
    after: T


class ByBatch(TypedDict, Generic[T]):
    """A figure for one image per call (`single_ms`) and for a batch per call (`batched_ms`)."""

    single_ms: T
    batched_ms: T


class LatencyMethod(TypedDict):
    """How the latencies were timed (workers.export.model.head_latencies)."""

    batch_size: ByBatch[int]
    repetitions: int
    calls_per_repetition: ByBatch[int]
    warmup_calls: int
    statistic: str


class HeadLatencies(TypedDict):
    """CPU milliseconds per image of the head before and after pruning: medians, quartiles, method."""

    before: ByBatch[float]
    after: ByBatch[float]
    spread: BeforeAfter[ByBatch[list[float]]]  # [first quartile, third quartile]
    method: LatencyMethod


class HeadReport(TypedDict):
    """The exported head's widths, parameters, FLOPs per image and CPU latency, before and after pruning."""

    widths: BeforeAfter[list[int]]
    parameters: BeforeAfter[int]
    flops: BeforeAfter[int]
    flops_note: str
    cpu_latency_ms: HeadLatencies


class ExportMeasured(DeployReport):
    """The measured part of one member's export.json (workers.export.build.build_and_check)."""

    input: InputInfo
    backbone: str
    mode: str
    fold: FoldInfo
    check: ExportCheck
    head: HeadReport
    model_parameters: BeforeAfter[int]  # of the whole model, backbone included


class EnsembleScores(TypedDict):
    """The ensemble's scores on the exported fold, from its heads' logits (evaluation.ensemble_scores)."""

    combine: str
    accuracy: float  # of the combination exported
    vote_accuracy: float
    mean_softmax_accuracy: float
    analysis_auroc: float  # the members' ODIN scores averaged, as the analysis scores an ensemble
    analysis_auroc_note: str


class HeadWidths(TypedDict):
    """The unpruned head's widths, and each member's pruned ones."""

    before: list[int]
    after: list[list[int]]


class HeadsSize(TypedDict):
    """Parameters and FLOPs per image of all the ensemble's heads together."""

    widths: HeadWidths
    parameters: BeforeAfter[int]
    flops: BeforeAfter[int]
    flops_note: str


class EnsembleMeasured(DeployReport):
    """The measured part of an ensemble's export.json (workers.export.ensemble.build_and_check_ensemble)."""

    input: InputInfo
    backbone: str
    mode: str
    fold: FoldInfo
    check: EnsembleCheck
    ensemble: EnsembleScores
    head: HeadsSize
    model_parameters: int
