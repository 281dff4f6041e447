"""The Ray launcher of the service's runners."""

import pytest

RAY_FROM_A_SHORT_THREAD = """
import threading, ray
from evoprune.coordinator.service.launcher import RayLauncher
launcher = RayLauncher(None)
thread = threading.Thread(target=launcher.connect)
thread.start()
thread.join()

@ray.remote
def answer():
    return 42

print("answer", ray.get(answer.remote(), timeout=60))
launcher.close()
"""


@pytest.mark.ray
def test_a_local_ray_started_from_a_short_lived_thread_outlives_it(tmp_path):
    # the server joins Ray from start-up and request threads; Ray's local processes die with the thread
    # that spawned them unless the launcher keeps that thread alive
    import os
    import subprocess
    import sys
    from pathlib import Path

    environment = {**os.environ, "RAY_ADDRESS": "", "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    completed = subprocess.run(
        [sys.executable, "-c", RAY_FROM_A_SHORT_THREAD],
        env=environment,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert "answer 42" in completed.stdout, completed.stderr[-3000:]
