"""What an evaluation worker reports about itself when it starts, for the coordinator to read."""

from __future__ import annotations

from typing import TypedDict


class WorkerInfo(TypedDict, total=False):
    """What a worker's prepare() reports, or why it did not answer (`error`).

    The real worker says worker, backend, device and mask_length; test and benchmark workers worker, pid
    and device.
    """

    worker: str  # host:pid
    backend: str  # the Keras backend
    device: str  # the accelerator it evaluates on, or the CPU
    mask_length: int
    pid: int
    error: str
