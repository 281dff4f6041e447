"""The few backend-specific pieces the Keras-ops numerical core needs: compiling and device naming."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


def backend_name() -> str:
    """The active Keras backend ("tensorflow", "jax", ...)."""
    return str(keras.backend.backend())


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

        jitted = jax.jit(function)
        if not x64:
            return jitted

        def call_in_x64(*args: Any) -> Any:
            with jax.enable_x64(True):
                return jitted(*args)

        return call_in_x64
    return function


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
