"""The few backend-specific pieces the Keras-ops numerical core needs: compiling and device naming."""

from __future__ import annotations

import importlib.util
import mmap
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import keras

# XLA:CPU hands some products to YNNPACK, whose kernels (picked at run time for the CPU) and blocking
# change with the operands' shapes: with one model XLA drops the model axis, so a model alone and the same
# model in a group were summed in different orders (a last-bit difference that flipped an AUROC rank on
# AVX2 machines). With the fusion type empty, every product goes through XLA's own dot emitters, whose
# batched form runs each model's slice as the unbatched one (tests/workers/evaluation/test_company.py).
YNN_FUSION_FLAG = "xla_cpu_experimental_ynn_fusion_type"
# The shared library holding each backend's XLA flag table: a flag it does not know makes XLA abort at
# start-up, so the flag is only passed where the installed build lists it.
XLA_LIBRARIES = {
    "tensorflow": ("libtensorflow_framework.so.2", "libtensorflow_framework.2.dylib"),
    "jaxlib": ("libjax_common.so", "libjax_common.dylib"),
}


def backend_name() -> str:
    """The active Keras backend ("tensorflow", "jax", ...)."""
    return str(keras.backend.backend())


@cache
def xla_knows_flag(package: str, flag: str = YNN_FUSION_FLAG) -> bool:
    """Whether the installed `package` (tensorflow or jaxlib) ships an XLA that lists `flag`.

    Found without importing the package, by the flag's name in its XLA library (a memory-mapped search:
    milliseconds).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return False
    folder = Path(next(iter(spec.submodule_search_locations)))
    for name in XLA_LIBRARIES[package]:
        library = folder / name
        if library.is_file():
            with library.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                return data.find(flag.encode() + b"\0") >= 0
    return False


def pin_cpu_products() -> None:
    """Turns XLA:CPU's YNNPACK fusions off for this process and the ones it starts, unless chosen already.

    Through XLA_FLAGS, read when a backend compiles its first function, so this runs when the module is
    imported (before the evaluator compiles anything); only when every installed XLA knows the flag.
    JAX also gets it per function (`compile_function`), which holds even if JAX compiled before.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if f"--{YNN_FUSION_FLAG}" in flags:
        return  # the user's own choice
    installed = [package for package in XLA_LIBRARIES if importlib.util.find_spec(package) is not None]
    if installed and all(xla_knows_flag(package) for package in installed):
        os.environ["XLA_FLAGS"] = f"{flags} --{YNN_FUSION_FLAG}=".strip()


pin_cpu_products()


def compile_function(
    function: Callable[..., Any], xla: bool = False, x64: bool = False
) -> Callable[..., Any]:
    """Compiles a pure keras.ops function for the active backend.

    TensorFlow gets a graph function, with XLA only when asked: XLA on CPU measured 20× slower for a
    large batched einsum (DESIGN.md) but 1.3-1.9× faster than the plain graph for small groups of
    models, whose optimizer update it fuses (benchmarks/). JAX always gets `jax.jit`. Other backends run
    eagerly.

    Args:
        function: a function of tensors only, free of Python side effects.
        xla: compile with XLA under TensorFlow.
        x64: the function computes in float64 somewhere (the Keras 2 early-stopping decision). TensorFlow
            has float64 as it is; JAX traces and runs such a function in its x64 mode, scoped to the call,
            so float64 values are not silently narrowed to float32 and the rest of the process is unchanged.

    Returns:
        The compiled function.
    """
    backend = backend_name()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True, jit_compile=xla)
    if backend == "jax":
        import jax

        options = {YNN_FUSION_FLAG: ""} if _jax_ynn_off() else None
        jitted = jax.jit(function, compiler_options=options)
        if not x64:
            return jitted

        def call_in_x64(*args: Any) -> Any:
            with jax.enable_x64(True):
                return jitted(*args)

        return call_in_x64
    return function


def _jax_ynn_off() -> bool:
    """Whether JAX's functions are compiled with the YNNPACK fusions off (see YNN_FUSION_FLAG)."""
    flags = os.environ.get("XLA_FLAGS", "")
    chosen = f"--{YNN_FUSION_FLAG}" in flags and f"--{YNN_FUSION_FLAG}= " not in f"{flags} "
    return not chosen and xla_knows_flag("jaxlib")


def device_description() -> str:
    """A short name of the device the backend computes on, e.g. "cpu" or "gpu:NVIDIA H200"."""
    backend = backend_name()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{getattr(device, 'device_kind', device.platform)}"
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        return f"gpu:{gpus[0].name}" if gpus else "cpu"
    return "cpu"


def has_accelerator() -> bool:
    """Whether the active backend sees a GPU."""
    return device_description().startswith("gpu")
