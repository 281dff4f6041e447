"""Load one exported file with its own runtime in a fresh process and run it on given inputs.

Run as `python -m evoprune.workers.export._runtime JOB.json` by workers.export._deploy. Each format is read
the way a deployment reads it, importing nothing else: Keras (`keras.saving.load_model`), TensorFlow
(`tf.saved_model.load`, its serving signature), the LiteRT interpreter (ai-edge-litert; TensorFlow's
deprecated `tf.lite.Interpreter` only where it is missing) and onnxruntime (which needs no TensorFlow).
The job names the inputs (.npy files); the outputs (class probabilities) are written to .npy files and the
runtime's name and version to the job's `report` file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 64
Predict = Callable[[np.ndarray], np.ndarray]


def load(format_name: str, path: str) -> tuple[Predict, dict[str, str]]:
    """Open an exported file with its runtime.

    Args:
        format_name: keras, saved_model, tflite or onnx.
        path: the file (the folder of a SavedModel).

    Returns:
        A function from a batch of inputs to probabilities, and the runtime's `name` and `version`.

    """
    if format_name == "keras":
        import keras

        model = keras.saving.load_model(path)
        return (lambda batch: np.asarray(model.predict(batch, verbose=0))), {
            "name": f"keras.saving.load_model ({keras.backend.backend()} backend)",
            "version": keras.__version__,
        }
    if format_name == "saved_model":
        import tensorflow as tf

        serve = tf.saved_model.load(path).signatures["serving_default"]
        (input_name,) = serve.structured_input_signature[1]

        def run_saved(batch: np.ndarray) -> np.ndarray:
            (output,) = serve(**{input_name: tf.constant(batch)}).values()
            return np.asarray(output.numpy())

        return run_saved, {"name": "tf.saved_model.load (serving_default)", "version": tf.__version__}
    if format_name == "tflite":
        return _tflite(path)
    if format_name == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        return (lambda batch: np.asarray(session.run(None, {input_name: batch})[0])), {
            "name": "onnxruntime (CPUExecutionProvider)",
            "version": onnxruntime.__version__,
        }
    raise ValueError(f"unknown format {format_name!r}")


def _tflite(path: str) -> tuple[Predict, dict[str, str]]:
    try:
        from ai_edge_litert import interpreter as litert

        interpreter: Any = litert.Interpreter(model_path=path)
        runtime = {"name": "ai_edge_litert.interpreter.Interpreter", "version": _version("ai-edge-litert")}
    except ImportError:
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=path)
        name = "tf.lite.Interpreter (deprecated; ai-edge-litert is missing)"
        runtime = {"name": name, "version": tf.__version__}
    source = interpreter.get_input_details()[0]
    target = interpreter.get_output_details()[0]
    shape: tuple[int, ...] = ()

    def run_tflite(batch: np.ndarray) -> np.ndarray:
        nonlocal shape
        if batch.shape != shape:  # the interpreter's tensors are sized per batch shape
            interpreter.resize_tensor_input(source["index"], batch.shape)
            interpreter.allocate_tensors()
            shape = batch.shape
        interpreter.set_tensor(source["index"], batch)
        interpreter.invoke()
        return np.array(interpreter.get_tensor(target["index"]))

    return run_tflite, runtime


def _version(distribution: str) -> str:
    from importlib import metadata

    return metadata.version(distribution)


def predict(run: Predict, inputs: np.ndarray) -> np.ndarray:
    """Probabilities of every input, in batches of BATCH."""
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    parts = [run(inputs[start : start + BATCH]) for start in range(0, len(inputs), BATCH)]
    return np.concatenate(parts).astype(np.float32, copy=False)


def main(argv: list[str]) -> int:
    """Run the job in the JSON file argv[0]: `format`, `path`, `inputs` and `outputs` (.npy), `report`."""
    job = json.loads(Path(argv[0]).read_text())
    run, runtime = load(job["format"], job["path"])
    for source, target in zip(job["inputs"], job["outputs"], strict=True):
        np.save(target, predict(run, np.load(source)))
    Path(job["report"]).write_text(json.dumps(runtime))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
