"""Every generated core/apps/autoscaling object against the official schemas, CPU and GPU."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path
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
        "ScaledObject",
        "HTTPRoute",
    }
    for obj in objects.values():
        if obj["kind"] in ("HTTPRoute", "ScaledObject"):
            assert c.crd_problems(obj) == []  # the official CRD schemas in ../shared/data
        else:
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
    (server,) = pod["containers"]
    # The default engine is the mlops engine, running the version's own image by digest:
    # model and engine baked in, nothing fetched at start, no init container.
    assert server["image"] == c.IMAGE and "initContainers" not in pod
    assert server["resources"] == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"memory": "1Gi"},
    }
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert server["securityContext"]["runAsNonRoot"] is True
    assert server["securityContext"]["readOnlyRootFilesystem"] is True
    # The plan's settings.json is mounted over the baked one (a batching change applies).
    (settings,) = [v for v in server["volumeMounts"] if v.get("subPath") == "settings.json"]
    assert settings["mountPath"] == "/models/fraud-scorer/2.3.1/settings.json"
    assert "nodeSelector" not in pod and "tolerations" not in pod
    # The autoscaler owns the replica count, so the Deployment does not set one.
    assert "replicas" not in deployment["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def image_references(node: Any) -> list[str]:
    """Every `image` field anywhere in an object (containers, init containers, ...)."""
    if isinstance(node, dict):
        found = [node["image"]] if isinstance(node.get("image"), str) else []
        return found + [ref for value in node.values() for ref in image_references(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in image_references(item)]
    return []


@pytest.mark.parametrize("engine", ["triton", "mlops"])
@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_every_rendered_image_is_by_digest_without_a_tag(kind: str, engine: str) -> None:
    objects = list(render(kind, engine=engine).values())
    refs = [ref for obj in objects for ref in image_references(obj)]
    assert refs, "no image reference rendered"
    for ref in refs:
        name, at, digest = ref.partition("@")
        assert at and re.fullmatch(r"sha256:[0-9a-f]{64}", digest), ref
        assert ":" not in name.rsplit("/", 1)[-1], f"tag in {ref}"
    assert "mlflow" not in str(objects).lower()  # nothing fetches from the registry


def test_triton_serves_the_model_copied_out_of_the_version_image() -> None:
    objects = render("cpu", engine="triton")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    (stage,) = pod["initContainers"]
    (server,) = pod["containers"]
    assert stage["image"] == c.IMAGE and server["image"] == c.TRITON
    source, target, config, sha = stage["command"][3:]
    assert source == "/models/fraud-scorer/2.3.1/model.onnx"
    assert target == "/triton-models/fraud-scorer/7/model.onnx"
    assert (config, sha) == ("/config/config.pbtxt", c.SHA)
    assert "--model-repository=/triton-models" in server["command"]
    assert "--metrics-config=histogram_latencies=true" in server["command"]


def test_the_staging_script_lays_out_triton_and_checks_the_sha(tmp_path: Path) -> None:
    """The init container's script, run here for real: the layout Triton reads, or a refusal."""
    pod = render("cpu", engine="triton")["Deployment"]["spec"]["template"]["spec"]
    script = pod["initContainers"][0]["command"][2]
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx bytes")
    config = tmp_path / "config.pbtxt"
    config.write_text('name: "fraud-scorer"\n')
    target = tmp_path / "repo" / "fraud-scorer" / "7" / "model.onnx"
    sha = hashlib.sha256(b"onnx bytes").hexdigest()
    argv = [sys.executable, "-c", script, str(model), str(target), str(config)]
    subprocess.run([*argv, sha], check=True)
    assert target.read_bytes() == b"onnx bytes"
    assert (tmp_path / "repo" / "fraud-scorer" / "config.pbtxt").read_text() == config.read_text()
    target.unlink()
    bad = subprocess.run([*argv, "0" * 64], capture_output=True, text=True)
    assert bad.returncode == 1 and "is not the registered" in bad.stderr and not target.exists()


def test_gpu_deployment_requests_gpus_on_matching_nodes() -> None:
    objects = render("gpu", engine="triton")
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


@pytest.mark.parametrize("engine", ["triton", "mlops"])
def test_scaled_objects_scale_on_prometheus_without_an_adapter(engine: str) -> None:
    cpu = render("cpu", engine=engine)["ScaledObject"]
    assert cpu["apiVersion"] == "keda.sh/v1alpha1"
    spec = cpu["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "fraud-scorer-v2-3-1",
    }
    # The CRD's CEL rule (jsonschema does not run CEL): min <= max.
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    (trigger,) = spec["triggers"]
    assert (trigger["type"], trigger["metricType"]) == ("prometheus", "AverageValue")
    metadata = trigger["metadata"]
    assert metadata["serverAddress"] == m.Options().prometheus_url
    assert metadata["threshold"] == "8"
    if engine == "mlops":
        assert metadata["query"] == 'sum(mlops_queue_depth{model="fraud-scorer",version="2.3.1"})'
    else:  # Triton's own queue metric, by its integer version
        query = 'sum(nv_inference_pending_request_count{model="fraud-scorer",version="7"})'
        assert metadata["query"] == query
    gpu = render("gpu", engine=engine)["ScaledObject"]["spec"]["triggers"][0]
    assert gpu["metricType"] == "Value" and gpu["metadata"]["threshold"] == "70"  # 0.7: 70%
    assert gpu["metadata"]["query"].startswith('avg(DCGM_FI_DEV_GPU_UTIL{namespace="models",')
    assert c.crd_problems(render("gpu", engine=engine)["ScaledObject"]) == []


def test_gpu_utilization_without_a_gpu_is_refused() -> None:
    d = c.deployment(autoscaling={"metric": "gpu_utilization", "target": 0.7})
    with pytest.raises(errors.SpecError, match="needs an accelerator"):
        k8s.render_manifests(d, c.registered(d), c.options())


def test_fixed_replicas_without_autoscaling() -> None:
    d = c.deployment(replicas={"min": 3, "max": 3})
    objects = {o["kind"]: o for o in k8s.render_manifests(d, c.registered(d), c.options())}
    assert "ScaledObject" not in objects
    assert objects["Deployment"]["spec"]["replicas"] == 3
    c.assert_core_valid(objects["Deployment"])


def test_a_version_without_an_image_is_refused_with_the_fix() -> None:
    d = c.cpu_spec()
    with pytest.raises(errors.RegistryError, match=r"image_digest.*images:"):
        k8s.render_manifests(d, c.registered(d, image=None), c.options())
    for bad in (
        "registry.example.com/ml/fraud-scorer:1.0",  # a tag only
        "registry.example.com/ml/fraud-scorer:1.0@sha256:" + "c" * 64,  # a tag and a digest
        "registry.example.com/ml/fraud-scorer@sha256:xyz",
    ):
        with pytest.raises(errors.ConfigError, match=r"digest|tag"):
            k8s.render_manifests(d, c.registered(d, image=None), c.options(), image=bad)
    # A registry on a port is not a tag.
    ported = "registry.local:5000/ml/fraud-scorer@sha256:" + "c" * 64
    objects = k8s.render_manifests(d, c.registered(d, image=ported), c.options())
    assert objects[1]["spec"]["template"]["spec"]["containers"][0]["image"] == ported


def test_bad_inputs_are_refused_with_one_clear_error() -> None:
    with pytest.raises(errors.ConfigError, match="image reference"):
        c.options(engine="triton", triton_image="Not An Image")
    with pytest.raises(errors.ConfigError, match="tag"):
        c.options(
            engine="triton",
            triton_image="nvcr.io/nvidia/tritonserver:24.12-py3@" + "sha256:" + "e" * 64,
        )
    with pytest.raises(errors.ConfigError, match=r"needs kubernetes\.image"):
        m.Options(engine="triton")
    with pytest.raises(errors.ConfigError, match="gateway_ref"):
        m.GatewayRef.parse("a/b/c")
    bytes_in = c.deployment(inputs=[{"name": "text", "dtype": "BYTES", "shape": [-1, 1]}])
    with pytest.raises(errors.SpecError, match="BYTES"):
        k8s.render_manifests(bytes_in, c.registered(bytes_in), c.options(engine="mlops"))
    # Triton serves strings (TYPE_STRING), batched too.
    objects = k8s.render_manifests(bytes_in, c.registered(bytes_in), c.options(engine="triton"))
    assert "TYPE_STRING" in objects[0]["data"]["config.pbtxt"]
    fixed = c.deployment(inputs=[{"name": "x", "dtype": "FP32", "shape": [1, 30]}])
    with pytest.raises(errors.SpecError, match="first dimension"):
        k8s.render_manifests(fixed, c.registered(fixed), c.options(engine="triton"))


def test_names_are_dns_labels() -> None:
    assert m.workload_name("fraud-scorer", "2.3.1") == "fraud-scorer-v2-3-1"
    assert m.workload_name("3d-model", "1.0.0").startswith("m3d-model-")
    long = m.workload_name("a" * 63, "10.20.30")
    assert len(long) <= 63 and long[0].isalpha() and long[-1].isalnum()
    assert m.workload_name("x", "1.0.0-rc.1") != m.workload_name("x", "1.0.0-rc-1")
    assert m.label_value("1.0.0+build.5") == "1.0.0_build.5"


def every_rendered_object() -> list[dict[str, Any]]:
    """Everything mlops renders: both specs on both engines, with and without a shadow, the
    model's shadow ConfigMap and the controller's RBAC."""
    from mlops.providers.kubernetes import rbac
    from mlops.providers.kubernetes import route as r
    from mlops.state import models as state

    shadow = state.ShadowRoute(version="2.3.1", percent=50)
    out: list[dict[str, Any]] = []
    for engine in ("mlops", "triton"):
        options = c.options(engine=engine)
        for make in SPECS.values():
            d = make()
            out += k8s.render_manifests(d, c.registered(d), options)
        cpu = c.cpu_spec()
        out += k8s.render_manifests(cpu, c.registered(cpu), options, shadow=shadow)
        out.append(r.shadow_config("fraud-scorer", shadow, options))
        out += rbac.controller_rbac(options)
    return out


def test_every_rendered_object_passes_the_official_schemas() -> None:
    """kubernetes-validate strict for two Kubernetes versions on every built-in object; the
    official CRD schema (../shared/data) on every custom one."""
    objects = every_rendered_object()
    kinds = {obj["kind"] for obj in objects}
    assert kinds == {
        "ConfigMap", "Deployment", "Service", "ScaledObject", "HTTPRoute",
        "ServiceAccount", "Role", "RoleBinding",
    }  # fmt: skip
    for obj in objects:
        if obj["kind"] in ("HTTPRoute", "ScaledObject"):
            assert c.crd_problems(obj) == [], obj["metadata"]["name"]
        else:
            c.assert_core_valid(obj)
        assert all("@sha256:" in ref for ref in image_references(obj))


def test_strict_validation_catches_an_unknown_field() -> None:
    import kubernetes_validate

    deployment = render("cpu")["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    for version in c.K8S_VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(deployment, version, strict=True)
