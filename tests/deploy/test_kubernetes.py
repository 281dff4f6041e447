"""The Kubernetes manifests: every document passes its schema, and together they run unattended (issue 23).

Core kinds (Service, Deployment, StatefulSet, PersistentVolumeClaim) are checked by kubernetes-validate (a
test extra) against the Kubernetes API's own JSON schemas; KubeRay's RayCluster and RayJob against the
openAPIV3Schema of KubeRay 1.7.0's CRDs (tests/deploy/schemas, taken from ray-operator/config/crd/bases of
the v1.7.0 tag). Both strictly, as `kubeconform -strict` does: a field a schema does not know (a typo,
which the API server would silently drop) fails. No cluster runs here: what the manifests do once
applied is checked on paper, by the consistency tests below.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from evoprune.coordinator.results.layout import ResultsLayout
from tests.deploy.tools import KUBERAY, ROOT, image_repository_and_tag, load_yaml_documents, project_version

KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"
SCHEMAS = Path(__file__).parent / "schemas"
# the oldest Kubernetes still widely run and the newest kubernetes-validate knows
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CRD_SCHEMAS = {
    ("ray.io/v1", "RayCluster"): "kuberay-v1.7.0-rayclusters.json.gz",
    ("ray.io/v1", "RayJob"): "kuberay-v1.7.0-rayjobs.json.gz",
}
RESULTS_MOUNT = "/data/evoprune/results"


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    files = [KUBERAY, *sorted(KUBERNETES_DIR.glob("*.yaml"))]
    return [(f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc) for path in files
            for doc in load_yaml_documents(path)]  # fmt: skip


MANIFESTS = _manifests()


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in MANIFESTS if doc["kind"] == kind]


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in _by_kind(kind) if doc["metadata"]["name"] == name]
    return found


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused wherever it lists an object's fields (kubeconform -strict)."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


def _crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    with gzip.open(SCHEMAS / CRD_SCHEMAS[(api_version, kind)]) as stored:
        schema = _strict(json.load(stored)["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("where", "manifest"), MANIFESTS, ids=[where for where, _ in MANIFESTS])
def test_every_manifest_passes_its_schema(where, manifest, version):
    key = (manifest["apiVersion"], manifest["kind"])
    if key in CRD_SCHEMAS:
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in
                  _crd_validator(*key).iter_errors(manifest)]  # fmt: skip
        assert not errors, f"{where}: {errors[:5]}"
    else:
        kubernetes_validate.validate(manifest, version, strict=True)


def test_the_schemas_refuse_a_misspelled_field():
    raycluster = copy.deepcopy(_one("RayCluster", "evoprune"))
    raycluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    assert list(_crd_validator("ray.io/v1", "RayCluster").iter_errors(raycluster))
    deployment = copy.deepcopy(_one("Deployment", "evoprune-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def _pods() -> dict[str, dict[str, Any]]:
    """Every pod template: the RayCluster's and the RayJob's groups, the API, Redis."""
    pods = {}
    for custom in (
        _one("RayCluster", "evoprune")["spec"],
        _one("RayJob", "evoprune-rps-10")["spec"]["rayClusterSpec"],
    ):
        pods.setdefault("raycluster-head", custom["headGroupSpec"]["template"]["spec"])
        for group in custom["workerGroupSpecs"]:
            pods.setdefault(f"raycluster-{group['groupName']}", group["template"]["spec"])
    for kind in ("Deployment", "StatefulSet"):
        for doc in _by_kind(kind):
            pods[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
    return pods


def test_the_rayjob_runs_the_ten_executions_on_the_clusters_own_spec():
    job = _one("RayJob", "evoprune-rps-10")["spec"]
    assert job["rayClusterSpec"] == _one("RayCluster", "evoprune")["spec"], "keep the two cluster specs equal"
    entrypoint = job["entrypoint"]
    assert "evoprune run configs/rps.yaml --runs 10 --out" in entrypoint and "cd /opt/evoprune" in entrypoint
    # a retry (a new cluster) continues from the checkpoint the first attempt left on the claim
    out = re.search(r"out=(\S+)", entrypoint)
    assert out is not None and out.group(1).startswith(RESULTS_MOUNT + "/")
    checkpoint = ResultsLayout(Path("$out")).checkpoint.as_posix()
    assert f'[ -f "{checkpoint}" ]' in entrypoint and 'evoprune resume "$out"' in entrypoint
    assert job["shutdownAfterJobFinishes"] is True and job["backoffLimit"] >= 1
    # the driver runs on the head, which offers no CPUs
    assert job["entrypointNumCpus"] == 0
    assert job["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"


def test_results_live_on_the_shared_claim_wherever_they_are_written():
    claims = {doc["metadata"]["name"]: doc for doc in _by_kind("PersistentVolumeClaim")}
    assert claims["evoprune-results"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claims["evoprune-datasets"]["spec"]["accessModes"] == ["ReadWriteMany"]
    for name, pod in _pods().items():
        volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
        for mount in pod["containers"][0].get("volumeMounts", []):
            volume = volumes.get(mount["name"])
            if volume is not None and "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, (name, volume)
        if name in ("raycluster-head", "evoprune-api"):
            mounts = {m["mountPath"]: volumes[m["name"]] for m in pod["containers"][0]["volumeMounts"]}
            assert mounts[RESULTS_MOUNT]["persistentVolumeClaim"]["claimName"] == "evoprune-results", name
            assert "emptyDir" not in mounts[RESULTS_MOUNT], name


def _container(name: str) -> dict[str, Any]:
    return _pods()[name]["containers"][0]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container.get("env", [])}


def test_the_api_takes_its_token_from_a_secret_and_probes_readiness_and_liveness():
    api = _container("evoprune-api")
    environment = _env(api)
    assert environment["EVOPRUNE_API_TOKEN"] == {"secretKeyRef": {"name": "evoprune-api", "key": "token"}}
    assert environment["EVOPRUNE_REQUIRE_TOKEN"] == "true"
    assert "evoprune-api" not in {doc["metadata"]["name"] for doc in _by_kind("Secret")}, "no token in git"
    assert api["readinessProbe"]["httpGet"]["path"] == "/health"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert api["startupProbe"]["httpGet"]["path"] == "/health/live"
    # a check takes at most 2 s per dependency (api/http/routes/health.py): the probe waits for both
    assert api["readinessProbe"]["timeoutSeconds"] > 4
    redis = _container("evoprune-redis")
    assert {"readinessProbe", "livenessProbe"} <= set(redis)


def test_the_api_joins_the_clusters_head_and_restarts_when_its_node_is_gone():
    api = _container("evoprune-api")
    script = api["command"][-1]
    assert api["command"][:2] == ["bash", "-c"]
    head_service = f"{_one('RayCluster', 'evoprune')['metadata']['name']}-head-svc"
    assert f"ray start --address={head_service}:6379 --num-cpus=0 --num-gpus=0" in script
    assert "--resources='{\"evoprune_results\": 1}'" in script
    assert "exec python3 /opt/evoprune/deploy/ray_node_guard.py" in script
    assert "--raylet-url http://127.0.0.1:52365/api/local_raylet_healthz" in script
    assert "--dashboard-agent-listen-port=52365" in script
    assert script.endswith("-- evoprune serve --host 0.0.0.0 --port 8000")
    environment = _env(api)
    assert environment["RAY_ADDRESS"] == f"{head_service}:6379"
    redis_service = _one("Service", "evoprune-redis")
    assert environment["REDIS_URL"] == f"redis://{redis_service['metadata']['name']}:6379/0"
    assert environment["EVOPRUNE_DATA_DIR"] + "/results" == RESULTS_MOUNT
    assert _one("Deployment", "evoprune-api")["spec"]["strategy"]["type"] == "Recreate"


def test_services_select_their_pods():
    for service in _by_kind("Service"):
        selector = service["spec"]["selector"]
        workloads = [
            doc
            for kind in ("Deployment", "StatefulSet")
            for doc in _by_kind(kind)
            if selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(workloads) == 1, service["metadata"]["name"]
        ports = {port["name"] for port in workloads[0]["spec"]["template"]["spec"]["containers"][0]["ports"]}
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports


def test_every_evoprune_pod_runs_the_projects_image():
    images = {_container(name)["image"] for name in ("raycluster-head", "raycluster-gpu", "evoprune-api")}
    assert {image_repository_and_tag(image) for image in images} == {("evoprune", project_version())}
