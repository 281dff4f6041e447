"""The deployments' backend split, on a real Ray node: a raylet started with KERAS_BACKEND=jax (as the compose
worker service and the cluster configs' workers are) runs the evaluator actors under JAX, without TensorFlow
in their processes, while the driver that created them stays on TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.deploy.tools import ROOT, private_ray_head

pytestmark = [pytest.mark.ray, pytest.mark.jax, pytest.mark.slow]

DRIVER_TIMEOUT_S = 300
# The driver: TensorFlow's backend (the API's), features from the demo data, one FeatureWorker actor on the
# "worker node", asked which backend it has, whether TensorFlow is loaded in it, and for two evaluations.
DRIVER = """
import json, sys
import keras, numpy as np, ray
from evoprune.shared.config import parse_config
from evoprune.workers.evaluation.actor import FeatureWorker
from evoprune.workers.features.assemble import load_feature_set

config = parse_config({
    "name": "split", "dataset": {"source": "sklearn:digits"}, "ood": [{"source": "sklearn:sample_images"}],
    "backbone": {"name": "pixels", "weights": None},
    "head": {"mode": "features", "layers": [8], "masked": [0]},
    "training": {"max_epochs": 2}, "search": {"population_size": 4, "max_evaluations": 4},
})
features = load_feature_set(config)
ray.init(address=sys.argv[1], log_to_driver=False)
worker = FeatureWorker.remote(ray.put(features), config)
described = ray.get(worker.prepare.remote())
masks = np.ones((2, described["mask_length"]), dtype=bool)
evaluations = ray.get(worker.evaluate.remote(masks))
loaded = ray.get(worker.__ray_call__.remote(lambda self: "tensorflow" in sys.modules))
print(json.dumps({"driver": keras.backend.backend(), "worker": described["backend"],
                  "worker_has_tensorflow": loaded, "accuracy": evaluations[0].accuracy}))
"""


def test_a_worker_node_started_with_jax_evaluates_under_jax_for_a_tensorflow_driver():
    # the node offers the CPU the actor needs; its environment is what the worker containers set
    with private_ray_head({"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}, "--num-cpus=1") as ports:
        driver_env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
        driver_env.update(KERAS_BACKEND="tensorflow", RAY_AUTH_MODE="disabled")
        completed = subprocess.run(
            [sys.executable, "-c", DRIVER, f"127.0.0.1:{ports['gcs']}"],
            env=driver_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT_S,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["driver"] == "tensorflow"
    assert result["worker"] == "jax"
    assert result["worker_has_tensorflow"] is False
    assert 0.0 <= result["accuracy"] <= 1.0


# The driver of the extraction test: a TensorFlow process with a feature cache of its own; the Ray node is a
# JAX worker with another cache folder (no shared volume, as on the Ray cluster launcher's nodes). Any
# extraction in the driver itself fails the test: its features must come from the worker's cache.
EXTRACTION_DRIVER = """
import json, sys
import ray
import evoprune.workers.features.feature_cache as feature_cache
from evoprune.coordinator.assembly import RunSettings, load_features
from evoprune.shared.config import parse_config

def refuse(*args, **kwargs):
    raise AssertionError("the driver extracted features itself")

config = parse_config({
    "name": "extract", "dataset": {"source": "sklearn:digits"}, "ood": [{"source": "sklearn:sample_images"}],
    "backbone": {"name": "pixels", "weights": None},
    "head": {"mode": "features", "layers": [8], "masked": [0]},
    "training": {"max_epochs": 2}, "search": {"population_size": 4, "max_evaluations": 4},
})
from evoprune.coordinator.extraction import extract_on_cluster
report = extract_on_cluster(config, sys.argv[1])
feature_cache._extract = refuse
features = load_features(config, RunSettings(address=sys.argv[1]))
print(json.dumps({**report, "driver_connected": ray.is_initialized(), "key": features.key,
                  "input_dim": features.input_dim}))
"""


def test_features_are_extracted_under_tensorflow_on_a_jax_worker_node_and_reach_the_driver(tmp_path):
    node_cache, driver_cache = tmp_path / "node-cache", tmp_path / "driver-cache"
    node_env = {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "EVOPRUNE_CACHE_DIR": str(node_cache)}
    with private_ray_head(node_env, "--num-cpus=1") as ports:
        driver_env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
        driver_env.update(
            KERAS_BACKEND="tensorflow", RAY_AUTH_MODE="disabled", EVOPRUNE_CACHE_DIR=str(driver_cache)
        )
        completed = subprocess.run(
            [sys.executable, "-c", EXTRACTION_DRIVER, f"127.0.0.1:{ports['gcs']}"],
            env=driver_env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=DRIVER_TIMEOUT_S,
            check=False,
        )
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    # the task ran under TensorFlow although its node's processes default to JAX
    assert result["backend"] == "tensorflow"
    assert result["cache_dir"] == str(node_cache)
    assert len(result["cached"]) == 2  # the dataset and its one OoD source
    # no shared folder: the files came through the object store, byte for byte, under the same names
    assert sorted(result["copied"]) == sorted(result["cached"])
    for name in result["cached"]:
        assert (driver_cache / name).read_bytes() == (node_cache / name).read_bytes()
    assert result["key"] and result["input_dim"] == 64
    # load_features found the driver connected (by extract_on_cluster) and left it so
    assert result["driver_connected"] is True
