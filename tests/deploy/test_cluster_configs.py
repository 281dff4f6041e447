"""The Ray cluster launcher config and the KubeRay manifest: valid, and consistent with the compose file."""

from __future__ import annotations

import copy
import re
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.deploy.tools import (
    COMPOSE_FILE,
    CONSTRAINTS,
    CPU_OVERRIDE,
    DOCKERFILE,
    EVOPRUNE_SERVICES,
    KUBERAY,
    RAY_CLUSTER,
    ROOT,
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
    # plus the results node's resource (tests/deploy/test_placement.py)
    assert types[head_type]["resources"] == {"CPU": 0, "GPU": 0, "evoprune_results": 1}
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


# ---- one source of truth for versions, one backend per role ------------------------------------------------


def _locked_versions() -> dict[str, str]:
    """name -> version of every `name==version` line of deploy/constraints.txt."""
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s;]+)", line.strip())
        if match:
            pins[_normalised(match.group(1))] = match.group(2)
    return pins


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9_.-]+", requirement)
    assert match is not None, requirement
    return _normalised(match.group(0))


def test_the_constraints_pin_every_dependency_of_the_image():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked_versions()
    wanted = project["dependencies"] + project["optional-dependencies"]["gpu"]
    missing = [r for r in wanted if _requirement_name(r) not in locked]
    assert not missing, f"not in deploy/constraints.txt (run deploy/lock.sh): {missing}"
    # the gpu extra brings JAX's CUDA 12 plugin and NVIDIA's libraries with it
    assert {"jax-cuda12-plugin", "nvidia-cudnn-cu12", "nvidia-cublas-cu12"} <= set(locked)
    # the pins the lock was built around are the ones it holds, and its bounds hold for what it chose
    for line in (ROOT / "deploy" / "requirements-image.in").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            version = locked[_requirement_name(requirement.name)]
            assert requirement.specifier.contains(version), line
            if "==" in line:
                assert str(requirement.specifier) == f"=={version}", line


def test_kuberay_the_launcher_and_the_installed_ray_agree_with_the_constraints(launcher, raycluster):
    import ray

    ray_version = _locked_versions()["ray"]
    assert raycluster["spec"]["rayVersion"] == ray_version
    # the launcher refuses to start Ray from an image with another version, on the head and on workers
    for commands in (launcher["head_start_ray_commands"], launcher["worker_start_ray_commands"]):
        (guard,) = [command for command in commands if "ray.__version__" in command]
        assert f"!= '{ray_version}'" in guard and f"needs {ray_version}" in guard
        assert commands.index(guard) < next(i for i, c in enumerate(commands) if "ray start" in c)
    assert f"ray[default]=={ray_version}" in RAY_CLUSTER.read_text()  # what to install locally for `ray up`
    assert ray.__version__ == ray_version, (
        "this environment's Ray is not the image's (deploy/constraints.txt)"
    )


def _kuberay_env(container) -> dict[str, str]:
    return {variable["name"]: variable["value"] for variable in container.get("env", [])}


def _launcher_env(options: list[str]) -> dict[str, str]:
    return dict(
        option.removeprefix("--env ").split("=", 1) for option in options if option.startswith("--env ")
    )


def test_workers_evaluate_under_jax_and_drivers_extract_under_tensorflow_everywhere(launcher, raycluster):
    compose = resolved_compose()["services"]
    launcher_worker = _launcher_env(launcher["docker"]["worker_run_options"])
    launcher_head = _launcher_env(launcher["docker"]["head_run_options"])
    kuberay = dict(_kuberay_containers(raycluster))
    kuberay_workers = [_kuberay_env(container) for name, container in kuberay.items() if name != "head"]
    workers = [compose["ray-worker"]["environment"], launcher_worker, *kuberay_workers]
    assert {env["KERAS_BACKEND"] for env in workers} == {"jax"}
    # JAX would otherwise reserve 75 % of a GPU per process; evaluators may share one
    assert {env["XLA_PYTHON_CLIENT_PREALLOCATE"] for env in workers} == {"false"}
    drivers = [compose["api"]["environment"], launcher_head, _kuberay_env(kuberay["head"])]
    assert {env["KERAS_BACKEND"] for env in drivers} == {"tensorflow"}
    # the GPU image carries what the workers' backend needs: the gpu extra is JAX with CUDA 12
    gpu_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "gpu"
    ]
    assert [r for r in gpu_extra if r.startswith("jax[cuda12]")]


def test_the_cpu_compose_variant_evaluates_under_tensorflow():
    cpu = resolved_compose(files=(COMPOSE_FILE, CPU_OVERRIDE))["services"]
    assert cpu["ray-worker"]["environment"]["KERAS_BACKEND"] == "tensorflow"


def test_the_cluster_drivers_can_run_the_documented_command(launcher, raycluster):
    # `evoprune run configs/rps.yaml --runs 10` needs EVOPRUNE_DATA (the config's folder: sources), that
    # folder mounted, and RAY_ADDRESS so that it joins the cluster instead of starting a Ray of its own
    expected = {"EVOPRUNE_DATA": "/data/datasets", "RAY_ADDRESS": "127.0.0.1:6379"}
    head_env = _launcher_env(launcher["docker"]["head_run_options"])
    assert {key: head_env[key] for key in expected} == expected
    assert "/data/datasets" in launcher["file_mounts"]
    head = dict(_kuberay_containers(raycluster))["head"]
    assert {key: _kuberay_env(head)[key] for key in expected} == expected
    mounts = {mount["mountPath"]: mount for mount in head["volumeMounts"]}
    assert mounts["/data/datasets"]["readOnly"] is True
    # the driver writes WORKDIR/results/NAME-TIME, a link to the image's /data/evoprune/results: a volume
    # must be that folder itself (an empty one mounted above it would leave the link dangling)
    assert "ln -s /data/evoprune/results /opt/evoprune/results" in DOCKERFILE.read_text()
    assert "/data/evoprune/results" in mounts and "/data/evoprune" not in mounts
    for text in (RAY_CLUSTER.read_text(), KUBERAY.read_text()):
        assert "evoprune run configs/rps.yaml --runs 10" in text and "--address auto" not in text
    assert "${EVOPRUNE_DATA}" in (ROOT / "configs" / "rps.yaml").read_text()


def test_the_launcher_names_a_current_gpu_machine_image(launcher):
    for name, node_type in launcher["available_node_types"].items():
        image = node_type["node_config"].get("ImageId", "")
        # a public SSM parameter of the DLAMI base image, resolved by EC2 at launch; no stale AMI id
        assert image.startswith(
            "resolve:ssm:/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-"
        ), name
