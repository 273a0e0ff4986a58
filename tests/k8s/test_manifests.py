"""Every generated core/apps/autoscaling object against the official schemas, CPU and GPU."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from mlops import errors
from mlops.providers.kubernetes import manifests as m
from mlops.providers.kubernetes import runtime as k8s
from tests.k8s import conftest as c

SPECS = {"cpu": c.cpu_spec, "gpu": c.gpu_spec}


def render(kind: str, **opts: Any) -> dict[str, dict[str, Any]]:
    d = SPECS[kind]()
    objects = k8s.render_manifests(d, c.registered(d), c.options(**opts))
    return {obj["kind"]: obj for obj in objects}


@pytest.mark.parametrize("engine", ["triton", "mlops"])
@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_every_core_object_is_valid(kind: str, engine: str) -> None:
    objects = render(kind, engine=engine)
    assert set(objects) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "HTTPRoute",
    }
    for obj in objects.values():
        if obj["kind"] != "HTTPRoute":
            c.assert_core_valid(obj)
        labels = obj["metadata"]["labels"]
        assert labels[m.MANAGED_BY] == "mlops"
        assert labels[m.NAME] == SPECS[kind]().name
        assert obj["metadata"]["namespace"] == "models"


def test_cpu_deployment_resources_probes_and_labels() -> None:
    deployment = render("cpu")["Deployment"]
    assert deployment["metadata"]["name"] == "fraud-scorer-v2-3-1"
    assert deployment["metadata"]["labels"][m.VERSION] == "2.3.1"
    pod = deployment["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert server["image"] == "nvcr.io/nvidia/tritonserver:24.12-py3"
    assert server["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"memory": "1Gi"},
    }
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert "nodeSelector" not in pod and "tolerations" not in pod
    # The HPA owns the replica count, so the Deployment does not set one.
    assert "replicas" not in deployment["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_gpu_deployment_requests_gpus_on_matching_nodes() -> None:
    objects = render("gpu")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"][m.GPU] == "2" and resources["requests"][m.GPU] == "2"
    assert resources["requests"]["cpu"] == "4"
    assert pod["nodeSelector"] == {"mlops.dev/accelerator": "nvidia-t4"}
    assert pod["tolerations"][0]["key"] == m.GPU
    config = text_format.Parse(objects["ConfigMap"]["data"]["config.pbtxt"], pb.ModelConfig())
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    # A prerelease semver: the name is lossy, so a hash keeps it unique; the label is exact.
    name = objects["Deployment"]["metadata"]["name"]
    assert name.startswith("image-tagger-v1-0-0-rc-1-") and len(name) <= 63
    assert objects["Deployment"]["metadata"]["labels"][m.VERSION] == "1.0.0-rc.1"


def test_hpa_metrics() -> None:
    cpu = render("cpu")["HorizontalPodAutoscaler"]["spec"]
    assert (cpu["minReplicas"], cpu["maxReplicas"]) == (1, 4)
    assert cpu["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "mlops_queue_depth"},
                "target": {"type": "AverageValue", "averageValue": "8"},
            },
        }
    ]
    gpu = render("gpu")["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]
    assert gpu["metric"]["name"] == "DCGM_FI_DEV_GPU_UTIL"
    assert gpu["target"]["averageValue"] == "70"  # 0.7 read as a fraction


def test_fixed_replicas_without_autoscaling() -> None:
    d = c.deployment(replicas={"min": 3, "max": 3})
    objects = {o["kind"]: o for o in k8s.render_manifests(d, c.registered(d), c.options())}
    assert "HorizontalPodAutoscaler" not in objects
    assert objects["Deployment"]["spec"]["replicas"] == 3
    c.assert_core_valid(objects["Deployment"])


def test_fetch_container_pins_the_registry_version_and_checksum() -> None:
    pod = render("cpu")["Deployment"]["spec"]["template"]["spec"]
    (fetch,) = pod["initContainers"]
    env = {e["name"]: e["value"] for e in fetch["env"]}
    assert env["MODEL_URI"] == "models:/fraud-scorer/7"
    assert env["MODEL_SHA256"] == c.SHA
    assert env["MODEL_PATH"] == "/models/fraud-scorer/7/model.onnx"
    assert env["CONFIG_PATH"] == "/models/fraud-scorer/config.pbtxt"
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlops.svc:5000"
    assert "sha256sum -c" in fetch["command"][-1]


def test_mlops_engine_image_by_digest_and_semver_layout() -> None:
    digest = "sha256:" + "c" * 64
    objects = render(
        "cpu", engine="mlops", engine_image="registry.local/mlops-engine:1.2", engine_digest=digest
    )
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"registry.local/mlops-engine@{digest}"
    env = {e["name"]: e["value"] for e in pod["initContainers"][0]["env"]}
    assert env["MODEL_PATH"] == "/models/fraud-scorer/2.3.1/model.onnx"
    assert "settings.json" in objects["ConfigMap"]["data"]


def test_bad_inputs_are_refused_with_one_clear_error() -> None:
    with pytest.raises(errors.ConfigError, match="image reference"):
        c.options(triton_image="Not An Image")
    with pytest.raises(errors.ConfigError, match="digest"):
        c.options(engine_digest="sha256:xyz")
    with pytest.raises(errors.ConfigError, match="gateway_ref"):
        m.GatewayRef.parse("a/b/c")
    bytes_in = c.deployment(inputs=[{"name": "text", "dtype": "BYTES", "shape": [-1, 1]}])
    with pytest.raises(errors.SpecError, match="BYTES"):
        k8s.render_manifests(bytes_in, c.registered(bytes_in), c.options(engine="mlops"))
    # Triton serves strings (TYPE_STRING), batched too.
    objects = k8s.render_manifests(bytes_in, c.registered(bytes_in), c.options())
    assert "TYPE_STRING" in objects[0]["data"]["config.pbtxt"]
    fixed = c.deployment(inputs=[{"name": "x", "dtype": "FP32", "shape": [1, 30]}])
    with pytest.raises(errors.SpecError, match="first dimension"):
        k8s.render_manifests(fixed, c.registered(fixed), c.options())


def test_names_are_dns_labels() -> None:
    assert m.workload_name("fraud-scorer", "2.3.1") == "fraud-scorer-v2-3-1"
    assert m.workload_name("3d-model", "1.0.0").startswith("m3d-model-")
    long = m.workload_name("a" * 63, "10.20.30")
    assert len(long) <= 63 and long[0].isalpha() and long[-1].isalnum()
    assert m.workload_name("x", "1.0.0-rc.1") != m.workload_name("x", "1.0.0-rc-1")
    assert m.label_value("1.0.0+build.5") == "1.0.0_build.5"
