"""Convert an exported .keras model to SavedModel, TFLite (optionally quantised) and ONNX, in its own process.

Run as `python -m evoprune.workers.export._convert JOB.json` by workers.export._deploy, under the TensorFlow
backend whatever backend the exporting process runs (Keras converts to these formats only from TensorFlow);
it writes one JSON object to the job's `report` file: the files written and the converters' versions.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from evoprune.workers.export.formats import (
    ONNX,
    SAVED_MODEL,
    TFLITE,
    ConvertJob,
    ConvertReport,
    file_name,
)


class LiteRTOptions(TypedDict, total=False):
    """The TFLiteConverter settings that Keras's LiteRT exporter passes on."""

    optimizations: list[Any]
    representative_dataset: Callable[[], Iterator[list[np.ndarray]]]
    target_spec: dict[str, list[Any]]


def convert(job: ConvertJob) -> ConvertReport:
    """Write every format of `job` beside its .keras file.

    Args:
        job: `keras` (the file), `formats`, `quantize` (None, "float16", "int8") and `calibration` (a .npy
            of training inputs; int8 only).

    Returns:
        `files`: format -> file name written; `float_tflite_bytes` (with a quantisation: the size of the
        unquantised TFLite model, measured, not kept); `versions` of the converters.

    """
    import keras
    import tensorflow as tf

    source = Path(job["keras"])
    stem, folder = source.stem, source.parent
    model = keras.saving.load_model(source)
    written: dict[str, str] = {}
    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    report: ConvertReport = {"files": written, "versions": versions}
    quantize = job["quantize"]
    for name in job["formats"]:
        if name == SAVED_MODEL:
            model.export(str(folder / file_name(stem, SAVED_MODEL)), format="tf_saved_model", verbose=False)
        elif name == ONNX:
            import tf2onnx

            versions["tf2onnx"] = tf2onnx.__version__
            model.export(str(folder / file_name(stem, ONNX)), format="onnx", verbose=False)
        elif name == TFLITE:
            target = folder / file_name(stem, TFLITE, quantize)
            model.export(str(target), format="litert", verbose=False, **_litert_options(job, quantize))
            if quantize is not None:
                float_model = folder / f".{stem}.float.tflite"
                model.export(str(float_model), format="litert", verbose=False, **_litert_options(job, None))
                report["float_tflite_bytes"] = float_model.stat().st_size
                float_model.unlink()
        else:
            continue
        written[name] = file_name(stem, name, quantize if name == TFLITE else None)
    return report


def _litert_options(job: ConvertJob, quantize: str | None) -> LiteRTOptions:
    """TFLiteConverter settings: built-in operators only, so the file runs on the plain LiteRT interpreter."""
    import tensorflow as tf

    if quantize is None:
        return {"target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}}
    if quantize == "float16":
        # weights stored as float16, computed in float32 (the converter's float16 post-training quantisation)
        return {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "target_spec": {
                "supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS],
                "supported_types": [tf.float16],
            },
        }
    calibration = np.load(job["calibration"])

    def representative() -> Iterator[list[np.ndarray]]:
        # one sample per step: the converter records each tensor's range over all of them
        for sample in calibration:
            yield [sample[None, ...].astype(np.float32)]

    # full-integer quantisation: every operator int8 (the converter fails rather than leave one in float);
    # the model still takes and returns float32, quantised at its input and dequantised at its output
    return {
        "optimizations": [tf.lite.Optimize.DEFAULT],
        "representative_dataset": representative,
        "target_spec": {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]},
    }


def main(argv: list[str]) -> int:
    """Convert the job in the JSON file argv[0]; write the report to the job's `report` file."""
    job = json.loads(Path(argv[0]).read_text())
    # a file, not stdout: the converters print their own lines there
    Path(job["report"]).write_text(json.dumps(convert(job)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
