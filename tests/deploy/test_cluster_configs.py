"""The Ray cluster launcher config and the KubeRay manifest: valid, and consistent with the compose file."""

from __future__ import annotations

import copy
import re

import pytest

from tests.deploy.tools import (
    EVOPRUNE_SERVICES,
    KUBERAY,
    RAY_CLUSTER,
    dockerfile_arg_default,
    image_repository_and_tag,
    load_yaml_documents,
    project_version,
    resolved_compose,
)


@pytest.fixture(scope="module")
def launcher():
    (config,) = load_yaml_documents(RAY_CLUSTER)
    return config


@pytest.fixture(scope="module")
def raycluster():
    (manifest,) = load_yaml_documents(KUBERAY)
    return manifest


def _kuberay_containers(raycluster):
    spec = raycluster["spec"]
    yield "head", spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    for group in spec["workerGroupSpecs"]:
        yield group["groupName"], group["template"]["spec"]["containers"][0]


def test_every_deployment_runs_the_same_image_name_and_tag(launcher, raycluster):
    compose = resolved_compose()
    images = {compose["services"][name]["image"] for name in EVOPRUNE_SERVICES}
    images.add(launcher["docker"]["image"])
    images.update(container["image"] for _, container in _kuberay_containers(raycluster))
    assert {image_repository_and_tag(image) for image in images} == {("evoprune", project_version())}


def test_the_launcher_config_passes_rays_own_schema(launcher):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(launcher)
    validate_config(prepare_config(copy.deepcopy(launcher)))


def test_the_launcher_has_a_cpu_head_and_gpu_workers_started_like_compose(launcher):
    head_type = launcher["head_node_type"]
    types = launcher["available_node_types"]
    assert types[head_type]["resources"] == {"CPU": 0, "GPU": 0}
    workers = [spec for name, spec in types.items() if name != head_type]
    assert workers and all(spec["resources"].get("GPU", 0) >= 1 for spec in workers)
    assert "--gpus all" in launcher["docker"]["worker_run_options"]
    assert "--gpus all" not in launcher["docker"].get("run_options", [])
    head_start = " ".join(launcher["head_start_ray_commands"])
    assert "--num-cpus=0 --num-gpus=0" in head_start and "--dashboard-host=0.0.0.0" in head_start
    compose = resolved_compose()
    object_store = re.search(
        r"--object-store-memory=(\d+)", " ".join(compose["services"]["ray-head"]["command"])
    )
    assert object_store is not None
    for commands in (launcher["head_start_ray_commands"], launcher["worker_start_ray_commands"]):
        assert f"--object-store-memory={object_store.group(1)}" in " ".join(commands)


def test_the_kuberay_manifest_has_a_gpu_worker_group(raycluster):
    assert raycluster["apiVersion"] == "ray.io/v1" and raycluster["kind"] == "RayCluster"
    head = raycluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0" and head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    (group,) = raycluster["spec"]["workerGroupSpecs"]
    container = group["template"]["spec"]["containers"][0]
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_kuberay_pods_run_as_the_images_user_with_shared_memory_for_the_object_store(raycluster):
    uid = int(dockerfile_arg_default("USER_ID"))
    for group in [raycluster["spec"]["headGroupSpec"], *raycluster["spec"]["workerGroupSpecs"]]:
        pod = group["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid and pod["securityContext"]["runAsNonRoot"]
        memory_volumes = {
            v["name"] for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"
        }
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert any(mounts.get(name) == "/dev/shm" for name in memory_volumes)
