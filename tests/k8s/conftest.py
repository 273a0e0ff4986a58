"""Fixtures for the kubernetes target: specs written inline (CPU and GPU), registered versions,
and validators against the official schemas (the `kubernetes` client's strict models and
kubernetes-validate's OpenAPI JSON schemas of two Kubernetes releases)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops.providers.kubernetes import manifests as m
from mlops.spec import models as spec
from mlops.state import models as state

ROOT = Path(__file__).resolve().parents[2]
# Real-cluster tests run only against a cluster the user names (never skipped, just absent).
collect_ignore = [] if os.environ.get("KUBECONFIG") else ["test_real_cluster.py"]
# kubernetes-validate's strict schemas of two Kubernetes releases: an older supported one and
# a recent one, so a field that moved or was removed between them shows up.
K8S_VERSIONS = ("1.30", "1.34")
SHA = "ab" * 32
# The version's image as apply records it (MLflow tag image_digest), and a Triton release.
IMAGE = "registry.example.com/ml/fraud-scorer@sha256:" + "cd" * 32
TRITON = "nvcr.io/nvidia/tritonserver@sha256:" + "ef" * 32
# The official CRDs are third-party and are not copied into this repository: they are read
# from the shared data beside the checkout (../shared/data, there on the team's machines and
# in CI). MLOPS_GATEWAY_API_CRDS may name another Gateway API standard-install.yaml.
CRD_ENV = "MLOPS_GATEWAY_API_CRDS"
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_CRDS = SHARED / "gateway-api" / "standard-install-v1.4.1.yaml"
KEDA_CRD = SHARED / "keda" / "keda.sh_scaledobjects-v2.20.2.yaml"

KLASS = {
    "ConfigMap": "V1ConfigMap",
    "Deployment": "V1Deployment",
    "Service": "V1Service",
    "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
    "ServiceAccount": "V1ServiceAccount",
    "Role": "V1Role",
    "RoleBinding": "V1RoleBinding",
}


def deployment(
    name: str = "fraud-scorer",
    version: str = "2.3.1",
    *,
    hardware: dict[str, Any] | None = None,
    batching: dict[str, Any] | None = None,
    replicas: dict[str, Any] | None = None,
    autoscaling: dict[str, Any] | None = None,
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
) -> spec.ModelDeployment:
    serving: dict[str, Any] = {
        "hardware": hardware or {"cpu": 1, "memory": "1Gi", "accelerator": "none"},
        "replicas": replicas or {"min": 1, "max": 4},
        "batching": batching or {"max_batch_size": 32, "max_queue_delay_ms": 5},
    }
    if autoscaling is not None:
        serving["autoscaling"] = autoscaling
    return spec.ModelDeployment.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": {
                    "version": version,
                    "artifact": f"models/{name}-{version}.onnx",
                    "signature": {
                        "inputs": inputs or [{"name": "input", "dtype": "FP32", "shape": [-1, 30]}],
                        "outputs": outputs
                        or [
                            {"name": "label", "dtype": "INT64", "shape": [-1]},
                            {"name": "probabilities", "dtype": "FP32", "shape": [-1, 2]},
                        ],
                    },
                    "baseline": {"value": 0.95, "p99_ms": 15},
                },
                "serving": serving,
            },
        }
    )


def cpu_spec() -> spec.ModelDeployment:
    return deployment(autoscaling={"metric": "queue_depth", "target": 8})


def gpu_spec() -> spec.ModelDeployment:
    return deployment(
        "image-tagger",
        "1.0.0-rc.1",
        hardware={"cpu": 4, "memory": "16Gi", "accelerator": "nvidia-t4", "count": 2},
        batching={
            "max_batch_size": 64,
            "max_queue_delay_ms": 2.5,
            "preferred_batch_sizes": [16, 32],
        },
        replicas={"min": 2, "max": 8},
        autoscaling={"metric": "gpu_utilization", "target": 0.7},
    )


def registered(
    d: spec.ModelDeployment, number: int = 7, image: str | None = IMAGE
) -> state.RegistryVersion:
    """A registered version; `image` is what apply recorded (None: never built)."""
    model = d.spec.model
    version = state.RegistryVersion(
        name=d.name,
        semver=model.version,
        registry_version=str(number),
        sha256=SHA,
        artifact_uri="mlflow-artifacts:/1/run/artifacts/model/model.onnx",
        signature=model.signature,
        baseline=model.baseline,
    )
    if image is None:
        return version
    tags = {m.IMAGE_REFERENCE_TAG: image, m.IMAGE_DIGEST_TAG: image.rpartition("@")[2]}
    return version.model_copy(update=tags)


def options(**overrides: Any) -> m.Options:
    base: dict[str, Any] = {
        "namespace": "models",
        "gateway": m.GatewayRef(name="inference", namespace="gateways"),
    }
    if overrides.get("engine") == "triton":
        base["triton_image"] = TRITON
    return m.Options(**(base | overrides))


def assert_core_valid(obj: dict[str, Any]) -> None:
    """A built-in object must pass kubernetes-validate (official OpenAPI schema, strict:
    unknown fields refused) for every version in K8S_VERSIONS and deserialize into the
    client's model losing nothing."""
    import kubernetes_validate
    from kubernetes import client

    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)
    api = client.ApiClient()
    klass = KLASS[obj["kind"]]
    model = api.deserialize(json.dumps(obj), klass, "application/json")
    assert api.sanitize_for_serialization(model) == obj
    getattr(client, klass).model_validate(obj)  # extra="forbid" in the client's models


def crd_schema(kind: str, version: str = "v1") -> dict[str, Any]:
    """The openAPIV3Schema of `kind` from the official CRD file, made strict (unknown fields
    refused, as `fieldValidation=Strict` does). A missing file fails: no skip hides it."""
    path = KEDA_CRD if kind == "ScaledObject" else Path(os.environ.get(CRD_ENV) or DEFAULT_CRDS)
    if not path.is_file():
        raise AssertionError(
            f"official CRDs not found at {path}: the shared data must sit beside the checkout "
            f"(../shared/data), or set {CRD_ENV} (third-party files, never vendored)"
        )
    for doc in yaml.safe_load_all(path.read_text()):
        if (doc or {}).get("kind") != "CustomResourceDefinition":
            continue
        if doc["spec"]["names"]["kind"] != kind:
            continue
        for item in doc["spec"]["versions"]:
            if item["name"] == version:
                schema: dict[str, Any] = _strict(item["schema"]["openAPIV3Schema"])
                return schema
    raise AssertionError(f"{path} has no {kind} {version}")


def crd_problems(obj: dict[str, Any]) -> list[str]:
    """Problems of a custom object against its official CRD schema (empty: valid)."""
    import jsonschema

    group_version = obj["apiVersion"].split("/")[-1]
    validator = jsonschema.Draft202012Validator(crd_schema(obj["kind"], group_version))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]


def _strict(node: Any) -> Any:
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/fraud-scorer-1.0.0.onnx from the example trainer (real skl2onnx export)."""
    out = tmp_path_factory.mktemp("trained")
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "train.py"),
            "--version",
            "1.0.0",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


@pytest.fixture
def k8s_workspace(tmp_path: Path, trained: Path) -> Path:
    """A kubernetes-target workspace with the example spec and its artifact."""
    root = tmp_path / "ws"
    (root / "specs").mkdir(parents=True)
    shutil.copytree(trained / "models", root / "models")
    shutil.copytree(trained / "data", root / "data")
    shutil.copy(ROOT / "specs" / "fraud-scorer.yaml", root / "specs" / "fraud-scorer.yaml")
    (root / "mlops.yaml").write_text(
        "target: kubernetes\nkubernetes: {namespace: models, gateway_ref: gateways/inference}\n"
    )
    return root
