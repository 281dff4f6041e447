"""The deployment formats of an export: converted in one process, each reloaded by its own runtime in another.

The .keras file is converted (workers.export._convert) and every written file, the .keras one included, is
loaded in a fresh Python process by the runtime a deployment would use (workers.export._runtime) and run on
the fitness split and the OoD samples of the exported fold. Unquantised files must reproduce the search's
predictions as the .keras file does (float rounding may flip only near-ties); a quantised TFLite file
reports what the quantisation cost in accuracy and AUROC instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from evoprune.shared.config import RobustnessConfig
from evoprune.workers.export._check import ExportMismatchError, compare_predictions, probability_auroc
from evoprune.workers.export.formats import (
    KERAS,
    TFLITE,
    ConvertJob,
    ConvertReport,
    DeployReport,
    FormatEntry,
    RuntimeInfo,
    file_name,
    size_bytes,
)

# a CNN backbone converts and runs in minutes on 2 CPU cores; a process still busy after this is stuck
CHILD_TIMEOUT_S = 3600
STDERR_SHOWN_CHARS = 2000
# the .keras file's AUROC from its probabilities equals the head's from its logits to float error, unless
# float32 softmax saturates (see `judge`)
AUROC_AGREEMENT = 1e-6
SATURATED_NOTE = (
    "AUROC from the file's float32 probabilities, which saturate (round to 0 and 1) for this model, so that "
    "the ODIN scores at this temperature tie where the search's, from logits, do not: not comparable with "
    "the search's AUROC; the change between formats still compares like with like"
)


class ExportConversionError(ExportMismatchError):
    """A converter or runtime process failed; the message ends with what it wrote to stderr."""


@dataclass(frozen=True)
class Reference:
    """What every file is checked against: the re-trained head of the exported fold."""

    labels: np.ndarray  # (N,) of the fitness split
    logits: np.ndarray  # (N, C) the head's logits there
    robustness: RobustnessConfig
    retrained_auroc: float | None  # the fold's AUROC from the head's logits; None without OoD inputs


@dataclass(frozen=True)
class Samples:
    """Raw inputs to run every file on, as the exported model takes them."""

    evaluation: np.ndarray  # the fitness split, in the order of Reference.labels
    ood: np.ndarray | None  # the fold's OoD samples (None: not measurable, see `ood_note`)
    calibration: np.ndarray | None  # training samples for int8 calibration
    ood_note: str | None = None


def deploy(
    keras_file: Path,
    formats: Sequence[str],
    quantize: str | None,
    samples: Samples,
    reference: Reference,
    say: Callable[[str], None],
) -> DeployReport:
    """Convert `keras_file` to the other formats beside it, reload each file in a fresh process, compare.

    Args:
        keras_file: the checked .keras file (in the export's staging folder).
        formats: from workers.export.formats.parse_formats (keras first).
        quantize: None, "float16" or "int8" (the TFLite file's).
        samples: the inputs to run every file on.
        reference: what the files are checked against.
        say: progress lines.

    Returns:
        `formats`: per format its file, size, runtime, accuracy and AUROC with their change from the .keras
        file's, and the comparison with the search's predictions; `quantize`; `converter` versions;
        `float_tflite_bytes` when quantised.

    Raises:
        ExportMismatchError: an unquantised file does not reproduce the search's predictions.
        ExportConversionError: a converter or runtime process failed.

    """
    with tempfile.TemporaryDirectory(prefix="evoprune-export-") as work:
        workdir = Path(work)
        inputs = {"evaluation": samples.evaluation, "ood": samples.ood}
        paths = {}
        for name, values in inputs.items():
            if values is not None:
                paths[name] = workdir / f"{name}.npy"
                np.save(paths[name], np.ascontiguousarray(values, dtype=np.float32))
        converted: ConvertReport = {"files": {KERAS: keras_file.name}, "versions": {}}
        others = [name for name in formats if name != KERAS]
        if others:
            say(f"converting to {', '.join(others)}{f' ({quantize})' if quantize else ''} in a new process")
            converted = _convert(keras_file, others, quantize, samples.calibration, workdir)
            converted["files"] = {KERAS: keras_file.name, **converted["files"]}
        results: dict[str, FormatEntry] = {}
        for name in formats:
            path = keras_file.parent / converted["files"][name]
            say(f"reloading {path.name} with its own runtime in a fresh process")
            started = time.perf_counter()
            outputs, runtime = _run(name, path, paths, workdir)
            results[name] = _measured(
                name, path, quantize if name == TFLITE else None, outputs, runtime, reference, samples
            )
            results[name]["seconds"] = round(time.perf_counter() - started, 3)
    judge(results)
    report: DeployReport = {"formats": results, "quantize": quantize, "converter": converted["versions"]}
    if "float_tflite_bytes" in converted:
        report["float_tflite_bytes"] = converted["float_tflite_bytes"]
    return report


def judge(results: dict[str, FormatEntry]) -> None:
    """Add each file's accuracy and AUROC change from the .keras file's; refuse an unfaithful float file.

    Args:
        results: per format the measured entry (`_measured`), the .keras file's among them.

    Raises:
        ExportMismatchError: an unquantised file's predictions differ from the search's beyond near-ties.

    Where the .keras file's AUROC from its probabilities is not the head's from its logits, every entry
    says so (`auroc_note`): the probabilities saturated, which the logits the search scored did not.

    """
    baseline = results[KERAS]
    retrained, measured = baseline["retrained_auroc"], baseline["auroc"]
    saturated = retrained is not None and measured is not None and abs(measured - retrained) > AUROC_AGREEMENT
    for name, entry in results.items():
        if saturated:
            entry["auroc_note"] = SATURATED_NOTE
        entry["accuracy_change"] = entry["accuracy"] - baseline["accuracy"]
        if entry["auroc"] is not None and baseline["auroc"] is not None:
            entry["auroc_change"] = entry["auroc"] - baseline["auroc"]
        if entry["quantization"] is None and not entry["reproduced"]:
            raise ExportMismatchError(
                f"the {name} file scores accuracy {entry['accuracy']!r} where the search's head scored "
                f"{entry['retrained_accuracy']!r}: {entry['disagreements']} predictions differ, "
                f"{entry['unexplained']} of them not at a near-tie of two classes"
            )


def _measured(
    name: str,
    path: Path,
    quantization: str | None,
    outputs: dict[str, np.ndarray],
    runtime: RuntimeInfo,
    reference: Reference,
    samples: Samples,
) -> FormatEntry:
    comparison = compare_predictions(outputs["evaluation"], reference.logits, reference.labels)
    auroc = None
    if "ood" in outputs:
        auroc = probability_auroc(outputs["evaluation"], outputs["ood"], reference.robustness)
    entry: FormatEntry = {
        "file": path.name,
        "bytes": size_bytes(path),
        "runtime": runtime,
        "quantization": quantization,
        "accuracy": comparison["exported_accuracy"],
        "retrained_accuracy": comparison["retrained_accuracy"],
        "auroc": auroc,
        "retrained_auroc": reference.retrained_auroc,
        "exact": comparison["exact"],
        "disagreements": comparison["disagreements"],
        "unexplained": comparison["unexplained"],
        "reproduced": comparison["reproduced"],
        "max_probability_difference": comparison["max_probability_difference"],
    }
    if auroc is None:
        entry["auroc_note"] = samples.ood_note
    return entry


def _child_environment(backend: str | None = None) -> dict[str, str]:
    environment = dict(os.environ)
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # the checks run on the CPU: a deployed file must not need an accelerator, and the exporting process
    # may hold it
    environment["CUDA_VISIBLE_DEVICES"] = ""
    if backend is not None:
        environment["KERAS_BACKEND"] = backend
    return environment


def _child(module: str, job: object, report: Path, what: str, backend: str | None = None) -> object:
    """Run `python -m module JOB.json` in a fresh process; its report, written to `report`."""
    job_file = report.with_suffix(".job.json")
    job_file.write_text(json.dumps(job))
    try:
        finished = subprocess.run(
            [sys.executable, "-m", module, str(job_file)],
            env=_child_environment(backend),
            capture_output=True,
            text=True,
            timeout=CHILD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ExportConversionError(f"{what} did not finish within {CHILD_TIMEOUT_S} s") from None
    if finished.returncode != 0 or not report.is_file():
        raise ExportConversionError(
            f"{what} failed (exit status {finished.returncode}): {finished.stderr[-STDERR_SHOWN_CHARS:]}"
        )
    return json.loads(report.read_text())


def _convert(
    keras_file: Path,
    formats: Sequence[str],
    quantize: str | None,
    calibration: np.ndarray | None,
    workdir: Path,
) -> ConvertReport:
    report = workdir / "convert.report.json"
    job: ConvertJob = {
        "keras": str(keras_file),
        "formats": list(formats),
        "quantize": quantize,
        "report": str(report),
    }
    if quantize == "int8":
        assert calibration is not None, "int8 needs calibration samples"
        job["calibration"] = str(workdir / "calibration.npy")
        np.save(job["calibration"], np.ascontiguousarray(calibration, dtype=np.float32))
    # Keras converts to these formats from the TensorFlow backend only, whatever this process runs
    written = _child(
        "evoprune.workers.export._convert", job, report, "converting the .keras file", backend="tensorflow"
    )
    # the child is our own module: its report has the type it declares
    return cast(ConvertReport, written)


def _run(
    name: str, path: Path, inputs: dict[str, Path], workdir: Path
) -> tuple[dict[str, np.ndarray], RuntimeInfo]:
    outputs = {key: workdir / f"{name}-{key}-out.npy" for key in inputs}
    report = workdir / f"{name}.report.json"
    job = {
        "format": name,
        "path": str(path),
        "inputs": [str(inputs[key]) for key in inputs],
        "outputs": [str(outputs[key]) for key in inputs],
        "report": str(report),
    }
    what = f"loading the {name} file"
    runtime = cast(RuntimeInfo, _child("evoprune.workers.export._runtime", job, report, what))
    return {key: np.load(target) for key, target in outputs.items()}, runtime


def expected_names(stem: str, formats: Sequence[str], quantize: str | None) -> list[str]:
    """The files (and SavedModel folder) an export of these formats writes beside STEM.keras."""
    return [file_name(stem, name, quantize if name == TFLITE else None) for name in formats]
