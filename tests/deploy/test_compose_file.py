"""docker-compose.yml: valid for Docker Compose v2, and holding what a GPU box deployment needs."""

from __future__ import annotations

import importlib.util
import re

import pytest

from tests.deploy.tools import (
    COMPOSE_FILE,
    CPU_OVERRIDE,
    DOCKERFILE,
    EVOPRUNE_SERVICES,
    ROOT,
    TEST_TOKEN,
    image_repository_and_tag,
    project_version,
    resolved_compose,
    run_compose,
)

CACHE_VARIABLES = ("EVOPRUNE_CACHE_DIR", "KERAS_HOME", "TFDS_DATA_DIR")
GIB = 1 << 30


@pytest.fixture(scope="module")
def compose():
    return resolved_compose()


def _flag(command: list[str], name: str) -> str | None:
    """The value of `--name=value` (or `--name value`) in an exec-form command; None when absent."""
    text = " ".join(command)
    match = re.search(rf"--{re.escape(name)}[= ](\S+)", text)
    return match.group(1) if match else None


def test_compose_config_accepts_the_file(compose):
    assert set(compose["services"]) == {"redis", *EVOPRUNE_SERVICES}


@pytest.mark.parametrize("token", [None, ""], ids=["unset", "empty"])
def test_compose_refuses_to_start_without_an_api_token(token):
    env = {} if token is None else {"EVOPRUNE_API_TOKEN": token}
    result = run_compose(env, "config", "--quiet")
    assert result.returncode != 0
    assert "EVOPRUNE_API_TOKEN" in result.stderr and ".env" in result.stderr


def test_the_api_token_reaches_the_api_and_is_required(compose):
    environment = compose["services"]["api"]["environment"]
    assert environment["EVOPRUNE_API_TOKEN"] == TEST_TOKEN
    assert environment["EVOPRUNE_REQUIRE_TOKEN"] == "true"
    assert "token" not in str(compose["services"]["ray-worker"].get("environment", {})).lower()


def test_every_evoprune_service_runs_the_one_image_built_from_deploy_dockerfile(compose):
    images = {compose["services"][name]["image"] for name in EVOPRUNE_SERVICES}
    assert len(images) == 1
    assert image_repository_and_tag(images.pop()) == ("evoprune", project_version())
    for name in EVOPRUNE_SERVICES:
        assert compose["services"][name]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_every_service_has_a_healthcheck_and_the_api_waits_for_healthy_dependencies(compose):
    for name, service in compose["services"].items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"
    depends = compose["services"]["api"]["depends_on"]
    assert {name: spec["condition"] for name, spec in depends.items()} == {
        "redis": "service_healthy",
        "ray-head": "service_healthy",
        "ray-worker": "service_healthy",
    }
    assert compose["services"]["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"


def test_redis_persists_append_only_on_a_volume(compose):
    redis = compose["services"]["redis"]
    assert _flag(redis["command"], "appendonly") == "yes"
    data_dir = _flag(redis["command"], "dir")
    assert any(v["type"] == "volume" and v["target"] == data_dir for v in redis["volumes"])


def test_ray_head_serves_gcs_and_dashboard_on_all_interfaces_with_a_sized_object_store(compose):
    head = compose["services"]["ray-head"]
    command = head["command"]
    assert command[:3] == ["ray", "start", "--head"] and "--block" in command
    assert _flag(command, "dashboard-host") == "0.0.0.0"
    assert _flag(command, "dashboard-port") == "8265"
    assert any(port["target"] == 8265 for port in head["ports"])
    for name in EVOPRUNE_SERVICES:
        service = compose["services"][name]
        object_store = _flag(service["command"], "object-store-memory")
        assert object_store is not None, f"{name} leaves the object store unsized"
        assert int(service["shm_size"]) > int(object_store), f"{name}: /dev/shm cannot hold its object store"


def test_the_dashboard_stays_on_the_hosts_loopback_unless_widened(compose):
    (port,) = compose["services"]["ray-head"]["ports"]
    assert port["host_ip"] == "127.0.0.1"
    widened = resolved_compose({"RAY_DASHBOARD_BIND": "0.0.0.0", "RAY_DASHBOARD_PORT": "18265"})
    (port,) = widened["services"]["ray-head"]["ports"]
    assert (port["host_ip"], port["published"]) == ("0.0.0.0", "18265")


def test_ray_worker_joins_the_head_and_reserves_nvidia_gpus(compose):
    worker = compose["services"]["ray-worker"]
    assert worker["command"][:2] == ["ray", "start"] and "--block" in worker["command"]
    assert _flag(worker["command"], "address") == "ray-head:6379"
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["count"] == -1  # "all"
    two = resolved_compose({"EVOPRUNE_WORKER_GPUS": "2"})
    assert two["services"]["ray-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 2
    # `--scale ray-worker=N` needs a service without a fixed container name or host port
    assert "container_name" not in worker and not worker.get("ports")


def _healthcheck_module():
    spec = importlib.util.spec_from_file_location("evoprune_healthcheck", ROOT / "deploy" / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_service_is_probed_as_its_role_on_rays_public_health_endpoints(compose):
    healthcheck = _healthcheck_module()
    for name in EVOPRUNE_SERVICES:
        service = compose["services"][name]
        role = service["environment"]["EVOPRUNE_ROLE"]
        assert role == name, f"{name} says it is {role}"
        # compose spells the URL out (the native test maps its port); it must be the role's own check
        assert service["healthcheck"]["test"][-2:] == ["http", healthcheck.role_url(role)]
    # the ports those URLs use are the ones the services open
    head, worker = compose["services"]["ray-head"], compose["services"]["ray-worker"]
    assert _flag(head["command"], "dashboard-port") == "8265"
    for service in (head, worker):
        assert _flag(service["command"], "dashboard-agent-listen-port") == "52365"
        assert "52365" in service["expose"]
    assert "--dashboard-agent-listen-port=52365" in compose["services"]["api"]["command"][-1]


def test_every_evoprune_service_may_open_65536_files(compose):
    for name in EVOPRUNE_SERVICES:
        nofile = compose["services"][name]["ulimits"]["nofile"]
        assert (nofile["soft"], nofile["hard"]) == (65536, 65536), name


def test_api_serves_on_8000_attached_to_the_ray_head_with_redis(compose):
    api = compose["services"]["api"]
    script = api["command"][-1]
    assert "ray start --address=ray-head:6379 --num-cpus=0 --num-gpus=0" in script
    # the server runs under the guard that ends the container when its Ray node is gone (restart: joins again)
    assert "exec python3 /opt/evoprune/deploy/ray_node_guard.py" in script
    assert "--raylet-url http://127.0.0.1:52365/api/local_raylet_healthz" in script
    assert script.endswith("-- evoprune serve --host 0.0.0.0 --port 8000")
    assert api["restart"] == "unless-stopped"
    environment = api["environment"]
    assert environment["RAY_ADDRESS"] == "ray-head:6379"
    assert environment["REDIS_URL"] == "redis://redis:6379/0"
    assert any(port["target"] == 8000 and port["published"] == "8000" for port in api["ports"])


def test_caches_and_results_live_on_named_volumes(compose):
    assert {"redis-data", "features", "keras", "tensorflow-datasets", "evoprune-data"} <= set(
        compose["volumes"]
    )
    for name in ("ray-worker", "api"):
        service = compose["services"][name]
        targets = {v["target"]: v["source"] for v in service["volumes"] if v["type"] == "volume"}
        for variable in CACHE_VARIABLES:
            assert service["environment"][variable] in targets, f"{name}: {variable} is not on a volume"
    api = compose["services"]["api"]
    assert api["environment"]["EVOPRUNE_DATA_DIR"] in {v["target"] for v in api["volumes"]}


def test_the_api_writes_results_where_the_readme_says_on_a_volume(compose):
    from evoprune.shared.store import StoreSpec

    api = compose["services"]["api"]
    results_root = StoreSpec(data_dir=api["environment"]["EVOPRUNE_DATA_DIR"]).results_root
    assert str(results_root) == "/data/evoprune/results"
    assert "`/data/evoprune/results/ID`" in (ROOT / "README.md").read_text()
    (volume,) = [v for v in api["volumes"] if results_root.is_relative_to(v["target"])]
    assert volume["type"] == "volume"
    # `evoprune run` inside the image writes results/NAME-TIME from WORKDIR: the link leads to the same place
    assert f"ln -s {results_root} /opt/evoprune/results" in DOCKERFILE.read_text()


def test_the_api_reads_the_hosts_dataset_folder_read_only_as_evoprune_data(compose):
    api = compose["services"]["api"]
    (datasets,) = [v for v in api["volumes"] if v["target"] == api["environment"]["EVOPRUNE_DATA"]]
    assert datasets["type"] == "bind" and datasets["read_only"] is True
    moved = resolved_compose({"EVOPRUNE_DATASETS_DIR": "/srv/datasets"})
    assert "/srv/datasets" in {v["source"] for v in moved["services"]["api"]["volumes"]}


def test_cpu_override_drops_the_gpu_reservation_and_the_cuda_wheels():
    cpu = resolved_compose(files=(COMPOSE_FILE, CPU_OVERRIDE))
    worker = cpu["services"]["ray-worker"]
    assert not worker.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    for name in EVOPRUNE_SERVICES:
        service = cpu["services"][name]
        assert service["build"]["args"]["EXTRAS"] == ""
        assert image_repository_and_tag(service["image"]) == ("evoprune", f"{project_version()}-cpu")
    assert not {s["image"] for s in cpu["services"].values()} & {
        resolved_compose()["services"]["api"]["image"]
    }, "the CPU image must not take the GPU image's tag"
