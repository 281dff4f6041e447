"""Every node where Ray may place the service's actors, or the feature extraction, mounts the paths they use.

The nodes are docker-compose.yml's services (and the cluster configs' node types): what each offers to Ray is
read from its `ray start` command, what each mounts from its volumes. An actor may land on any node whose
offer covers its request (`ray.remote` options); there it runs with that node's environment, and must find
the API's results folder, the datasets and the caches on the same volumes as the API sees them.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import PurePosixPath
from typing import Any

import pytest

from evoprune.coordinator.extraction import extraction_resources
from evoprune.coordinator.placement import RESULTS_RESOURCE, RESULTS_SHARE
from evoprune.coordinator.service.jobs_run import JOB_ACTOR
from evoprune.coordinator.service.runner import RUNNER_ACTOR
from tests.deploy.tools import EVOPRUNE_SERVICES, KUBERAY, RAY_CLUSTER, load_yaml_documents, resolved_compose

# the API's environment variables naming what the actors read and write: the store's data folder (results
# go to its results/), the datasets the configs name, and the feature, Keras and TFDS caches
ACTOR_PATH_VARIABLES = (
    "EVOPRUNE_DATA_DIR",
    "EVOPRUNE_DATA",
    "EVOPRUNE_CACHE_DIR",
    "KERAS_HOME",
    "TFDS_DATA_DIR",
)
ACTORS = {"runner": RUNNER_ACTOR, "job": JOB_ACTOR}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return resolved_compose()


def ray_start_words(command: list[str]) -> list[str]:
    """The words of the `ray start` in an exec-form command (also inside `bash -c "ray start ... && ..."`)."""
    if command[:2] == ["bash", "-c"]:
        command = shlex.split(command[2].split("&&")[0])
    assert command[:2] == ["ray", "start"], command
    return command


def offered(command: list[str]) -> dict[str, float]:
    """What a `ray start` offers to tasks; a CPU or GPU count left to Ray's detection counts as some (1)."""
    words = ray_start_words(command)
    flags = dict(word[2:].split("=", 1) for word in words if word.startswith("--") and "=" in word)
    offer = {"CPU": float(flags.get("num-cpus", 1)), "GPU": float(flags.get("num-gpus", 1))}
    offer.update({name: float(amount) for name, amount in json.loads(flags.get("resources", "{}")).items()})
    return offer


def request(actor: Any) -> dict[str, float]:
    """What a `ray.remote` actor class asks of its node (Ray's default for an actor: no CPU to run)."""
    options = actor._default_options
    wanted = {"CPU": float(options.get("num_cpus") or 0), "GPU": float(options.get("num_gpus") or 0)}
    wanted.update({name: float(amount) for name, amount in (options.get("resources") or {}).items()})
    return wanted


def candidates(offers: dict[str, dict[str, float]], wanted: dict[str, float]) -> list[str]:
    """The nodes whose offer covers a request."""
    return sorted(
        name
        for name, offer in offers.items()
        if all(amount <= 0 or offer.get(resource, 0) >= amount for resource, amount in wanted.items())
    )


def mount_of(service: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The volume or bind mount of a compose service that holds `path` (the deepest one), or None."""
    holding = [
        mount
        for mount in service.get("volumes", [])
        if PurePosixPath(path).is_relative_to(PurePosixPath(mount["target"]))
    ]
    return max(holding, key=lambda mount: len(mount["target"]), default=None)


def placement_problems(compose: dict[str, Any], actors: dict[str, Any]) -> list[str]:
    """Why an actor could not see its paths on some node Ray may place it on; empty when every one can."""
    services = compose["services"]
    offers = {name: offered(services[name]["command"]) for name in EVOPRUNE_SERVICES}
    api_environment = services["api"]["environment"]
    problems = []
    for actor_name, actor in actors.items():
        nodes = candidates(offers, request(actor))
        if not nodes:
            problems.append(f"{actor_name}: no node offers {request(actor)}; it would never start")
        for node in nodes:
            environment = services[node].get("environment") or {}
            for variable in ACTOR_PATH_VARIABLES:
                path = api_environment[variable]
                if environment.get(variable) != path:
                    problems.append(
                        f"{actor_name} on {node}: {variable} is {environment.get(variable)!r}, not {path}"
                    )
                here, there = mount_of(services[node], path), mount_of(services["api"], path)
                if here is None or there is None or here["source"] != there["source"]:
                    problems.append(f"{actor_name} on {node}: {path} ({variable}) is not the API's volume")
    return problems


def test_each_actor_can_only_land_where_its_paths_are_the_apis_volumes(compose):
    assert placement_problems(compose, ACTORS) == []


# what the extraction task reads and writes where it runs: the datasets and the three caches (not results)
EXTRACTION_PATH_VARIABLES = ("EVOPRUNE_DATA", "EVOPRUNE_CACHE_DIR", "KERAS_HOME", "TFDS_DATA_DIR")


def test_feature_extraction_lands_on_a_worker_that_sees_the_apis_datasets_and_cache(compose):
    services = compose["services"]
    offers = {name: offered(services[name]["command"]) for name in EVOPRUNE_SERVICES}
    api_environment = services["api"]["environment"]
    for gpus in (0.0, 1.0):  # the CPU variant and the GPU box
        wanted = extraction_resources({"CPU": 8.0, "GPU": gpus})
        nodes = candidates(offers, {"CPU": wanted["num_cpus"], "GPU": wanted["num_gpus"]})
        assert nodes == ["ray-worker"], nodes
    worker = services["ray-worker"]
    for variable in EXTRACTION_PATH_VARIABLES:
        path = api_environment[variable]
        assert worker["environment"].get(variable) == path, variable
        here, there = mount_of(worker, path), mount_of(services["api"], path)
        assert here is not None and there is not None and here["source"] == there["source"], variable


def test_the_actors_ask_for_the_results_node_and_only_the_api_offers_it(compose):
    for actor in ACTORS.values():
        assert request(actor)[RESULTS_RESOURCE] == RESULTS_SHARE
    offers = {name: offered(compose["services"][name]["command"]) for name in EVOPRUNE_SERVICES}
    assert [name for name, offer in offers.items() if offer.get(RESULTS_RESOURCE)] == ["api"]


def test_the_check_sees_the_placement_it_replaced(compose):
    # before: the analysis asked for a CPU (only ray-worker offers one) and the runner for nothing at all
    old_analysis = type("Old", (), {"_default_options": {"num_cpus": 1}})
    old_runner = type("Old", (), {"_default_options": {"num_cpus": 0}})
    problems = placement_problems(compose, {"analysis": old_analysis, "runner": old_runner})
    assert any(p.startswith("analysis on ray-worker: /data/evoprune ") for p in problems), problems
    assert any(p.startswith("runner on ray-head:") for p in problems), problems
    # and a resource that no node offers would leave the actor pending for ever
    nowhere = type("Nowhere", (), {"_default_options": {"resources": {"elsewhere": 1}}})
    assert placement_problems(compose, {"export": nowhere}) == [
        "export: no node offers {'CPU': 0.0, 'GPU': 0.0, 'elsewhere': 1.0}; it would never start"
    ]


def test_the_cluster_configs_heads_offer_the_results_node_and_mount_results_and_datasets():
    (launcher,) = load_yaml_documents(RAY_CLUSTER)
    head_type = launcher["available_node_types"][launcher["head_node_type"]]
    assert head_type["resources"][RESULTS_RESOURCE] >= RESULTS_SHARE
    start = " ".join(launcher["head_start_ray_commands"])
    assert re.search(rf"--resources='{{\"{RESULTS_RESOURCE}\": 1}}'", start), start
    for name, node_type in launcher["available_node_types"].items():
        if name != launcher["head_node_type"]:
            assert RESULTS_RESOURCE not in node_type["resources"], name

    (raycluster,) = load_yaml_documents(KUBERAY)
    head = raycluster["spec"]["headGroupSpec"]
    # KubeRay passes the value to `ray start --resources=...` as written: a quoted JSON object
    assert json.loads(json.loads(head["rayStartParams"]["resources"])) == {RESULTS_RESOURCE: 1}
    (container,) = head["template"]["spec"]["containers"]
    mounted = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/data/evoprune/results", "/data/datasets", "/data/cache"} <= mounted
    for group in raycluster["spec"]["workerGroupSpecs"]:
        assert "resources" not in group["rayStartParams"], group["groupName"]
