"""The deployment formats of an export, their files, and what each needs installed (imports no TensorFlow)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NotRequired, TypedDict

KERAS = "keras"
SAVED_MODEL = "saved_model"
TFLITE = "tflite"
ONNX = "onnx"
# in the order they are written and reported; the .keras file always comes first, the others are converted
# from it
FORMATS = (KERAS, SAVED_MODEL, TFLITE, ONNX)
QUANTIZATIONS = ("float16", "int8")
# the modules a format's converter and runtime import, and the distribution that brings each
NEEDS = {
    ONNX: {"onnx": "onnx", "tf2onnx": "tf2onnx", "onnxruntime": "onnxruntime"},
}
# the key of export.json that lists the files of each format written
REPORT_FORMATS_KEY = "formats"
EXTRA_HINT = 'pip install "evoprune[export]"'


class FormatError(ValueError):
    """Formats or a quantisation that cannot be exported; the message names the option at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


def parse_formats(values: Iterable[str] | str | None) -> tuple[str, ...]:
    """The formats asked for, comma-separated or listed, in FORMATS order, the .keras file always among them.

    Args:
        values: e.g. "keras,tflite", ["onnx"], or None (only keras).

    Returns:
        The formats, without repeats.

    Raises:
        FormatError: an unknown or empty format name.

    """
    if values is None:
        return (KERAS,)
    if isinstance(values, str):
        values = [values]
    names = [name.strip().lower() for value in values for name in value.split(",")]
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        shown = repr(unknown[0]) if unknown[0] else "an empty name"
        raise FormatError(f"unknown export format {shown}; choose from {', '.join(FORMATS)}", "formats")
    return tuple(name for name in FORMATS if name == KERAS or name in names)


def check_request(formats: Sequence[str], quantize: str | None) -> None:
    """Refuse a quantisation without TFLite, and a format whose converter or runtime is not installed.

    Args:
        formats: from `parse_formats`.
        quantize: None, "float16" or "int8".

    Raises:
        FormatError: the problem, by option name.

    """
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise FormatError(
            f"unknown quantisation {quantize!r}; choose from {', '.join(QUANTIZATIONS)}", "quantize"
        )
    if quantize is not None and TFLITE not in formats:
        raise FormatError(
            f"--quantize {quantize} applies to the TFLite file only; add --format tflite", "quantize"
        )
    for name in formats:
        missing = [
            distribution
            for module, distribution in NEEDS.get(name, {}).items()
            if importlib.util.find_spec(module) is None
        ]
        if missing:
            raise FormatError(
                f"--format {name} needs {', '.join(missing)}, which is not installed: {EXTRA_HINT}", "formats"
            )


def file_name(stem: str, format_name: str, quantize: str | None = None) -> str:
    """The file (or, for a SavedModel, the folder) of one format beside `STEM.keras`.

    Args:
        stem: the .keras file's name without its suffix ("model" by default).
        format_name: one of FORMATS.
        quantize: the TFLite file's quantisation, if any (it names the file: model-int8.tflite).

    Returns:
        A plain name.

    """
    if format_name == SAVED_MODEL:
        return f"{stem}.saved_model"
    if format_name == TFLITE and quantize is not None:
        return f"{stem}-{quantize}.tflite"
    return f"{stem}.{format_name}"


def every_file_name(stem: str) -> list[str]:
    """The names an export of `stem` may write in any format, so that one export can clear another's."""
    names = [file_name(stem, name) for name in FORMATS]
    return names + [file_name(stem, TFLITE, quantize) for quantize in QUANTIZATIONS]


def size_bytes(path: Path) -> int:
    """A file's size, or the total size of a folder's files (a SavedModel)."""
    if path.is_dir():
        return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    return path.stat().st_size


class RuntimeInfo(TypedDict):
    """The runtime that reloaded a file: its name (and how it was used) and its version."""

    name: str
    version: str


class ConvertJob(TypedDict):
    """What the converter process is asked to do (workers.export._convert)."""

    keras: str  # the checked .keras file; the others are written beside it
    formats: list[str]  # besides keras
    quantize: str | None
    report: str  # where the converter writes its ConvertReport
    calibration: NotRequired[str]  # a .npy of training inputs, for int8


class ConvertReport(TypedDict):
    """What the converter process wrote."""

    files: dict[str, str]  # format -> file name beside the .keras file
    versions: dict[str, str]  # converter -> version
    float_tflite_bytes: NotRequired[int]  # with a quantisation: the unquantised TFLite file's size


class FormatEntry(TypedDict):
    """One written file in export.json: what it is, who reloaded it, and how it scored."""

    file: str
    bytes: int
    runtime: RuntimeInfo
    quantization: str | None
    accuracy: float  # on the exported fold's fitness split
    retrained_accuracy: float  # the search's head, there
    auroc: float | None  # None: the OoD samples cannot be given to the model (auroc_note says why)
    retrained_auroc: float | None
    exact: bool
    disagreements: int
    unexplained: int
    reproduced: bool
    max_probability_difference: float
    auroc_note: NotRequired[str | None]
    seconds: NotRequired[float]
    accuracy_change: NotRequired[float]  # from the .keras file's
    auroc_change: NotRequired[float]


class DeployReport(TypedDict):
    """The deployment part of export.json."""

    formats: dict[str, FormatEntry]
    quantize: str | None
    converter: dict[str, str]
    float_tflite_bytes: NotRequired[int]
