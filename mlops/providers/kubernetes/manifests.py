"""Pure builders of the Kubernetes objects that serve one model version, and of its route.

Per version: a ConfigMap (Triton `config.pbtxt` or the engine's `settings.json`), a Deployment
whose init container fetches the artifact from the registry and checks its sha256, a Service
and, when the spec autoscales, an HPA. Per model: one Gateway API HTTPRoute that splits traffic
by weight and mirrors to a shadow version. `KubernetesRuntime` sends exactly these dicts, and
`render_manifests` prints them, so what is reviewed is what is applied.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from mlops import errors
from mlops.providers.kubernetes import triton
from mlops.spec import models as spec

Obj = dict[str, Any]
MANAGED_BY = "app.kubernetes.io/managed-by"
NAME, VERSION, INSTANCE, COMPONENT = (
    f"app.kubernetes.io/{k}" for k in ("name", "version", "instance", "component")
)
SERVER, TRAFFIC = "model-server", "traffic"
ANNOTATION = "mlops.dev/"  # semver, model-version, sha256, settings: read back by refresh
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
MODELS_DIR = "/models"
GPU = "nvidia.com/gpu"
GATEWAY_GROUP = "gateway.networking.k8s.io"
# Every managed object carries this; refresh lists by it (one call per kind).
SELECTOR = f"{MANAGED_BY}=mlops"
_IMAGE = spec.IMAGE_REFERENCE  # the same rule mlops.yaml is validated with
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class GatewayRef:
    name: str
    namespace: str | None = None

    @classmethod
    def parse(cls, text: str) -> GatewayRef:
        """`NAME` or `NAMESPACE/NAME` (mlops.yaml `kubernetes.gateway_ref`)."""
        namespace, _, name = text.rpartition("/")
        for part in (name, *([namespace] if namespace else [])):
            if not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", part) or len(part) > 63:
                raise errors.ConfigError(
                    f"kubernetes.gateway_ref {text!r} must be NAME or NAMESPACE/NAME (DNS labels)"
                )
        return cls(name=name, namespace=namespace or None)


@dataclass(frozen=True)
class Options:
    """Cluster-side choices that are not part of a spec."""

    namespace: str = "default"
    gateway: GatewayRef | None = None
    engine: Literal["triton", "mlops"] = "triton"
    triton_image: str = "nvcr.io/nvidia/tritonserver:24.12-py3"
    engine_image: str = "mlops-engine:latest"
    engine_digest: str | None = None  # sha256:... of the built engine image: deploy by digest
    fetch_image: str = "ghcr.io/mlflow/mlflow:latest"  # runs `mlflow artifacts download`
    registry_uri: str = "http://mlflow:5000"  # as reachable from inside the cluster
    accelerator_label: str = "mlops.dev/accelerator"  # node label carrying the GPU model
    hostnames: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for image in (self.triton_image, self.engine_image, self.fetch_image):
            if not _IMAGE.match(image):
                raise errors.ConfigError(f"{image!r} is not an image reference")
        if self.engine_digest is not None and not _DIGEST.match(self.engine_digest):
            raise errors.ConfigError("engine image digest must be sha256:<64 hex characters>")

    @property
    def image(self) -> str:
        if self.engine == "triton":
            return self.triton_image
        if self.engine_digest:
            return f"{self.engine_image.split('@')[0].rsplit(':', 1)[0]}@{self.engine_digest}"
        return self.engine_image


@dataclass(frozen=True)
class VersionInput:
    """Everything one version's objects are built from. `settings` is the engine settings.json
    of the plan (signature, batching); `serving` gives hardware, replicas and autoscaling."""

    name: str
    semver: str
    model_version: int  # the registry's integer version: Triton's version directory
    sha256: str
    settings: Mapping[str, Any]
    serving: spec.Serving

    @property
    def signature(self) -> spec.Signature:
        return spec.Signature.model_validate(self.settings["signature"])

    @property
    def batching(self) -> spec.Batching:
        return spec.Batching.model_validate(self.settings.get("batching") or {})


def workload_name(model: str, semver: str) -> str:
    """Deployment/Service name: a DNS-1035 label such as `fraud-scorer-v2-3-1`."""
    slug = re.sub(r"[^a-z0-9]+", "-", semver.lower()).strip("-")
    name = f"{'m' if model[0].isdigit() else ''}{model}-v{slug}"
    # `1.0.0-rc.1` and `1.0.0-rc-1` share a slug: a hash keeps lossy names apart.
    if len(name) > 63 or not re.fullmatch(r"[0-9.]+", semver):
        digest = hashlib.sha256(f"{model}@{semver}".encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name


def label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9._-]", "_", text)[:63]
    return value.strip("._-") or "none"


def labels(model: str, component: str, semver: str | None = None) -> dict[str, str]:
    out = {NAME: model, COMPONENT: component, MANAGED_BY: "mlops"}
    if semver is not None:
        out |= {VERSION: label_value(semver), INSTANCE: workload_name(model, semver)}
    return out


def version_objects(version: VersionInput, options: Options) -> list[Obj]:
    """ConfigMap, Deployment, Service and (when autoscaling) HPA, in apply order."""
    objects = [
        _config_map(version, options),
        _deployment(version, options),
        _service(version, options),
    ]
    hpa = _hpa(version, options)
    return [*objects, hpa] if hpa else objects


def _meta(name: str, options: Options, lbl: Mapping[str, str], **extra: Any) -> Obj:
    return {"name": name, "namespace": options.namespace, "labels": dict(lbl), **extra}


def _config_map(version: VersionInput, options: Options) -> Obj:
    name = workload_name(version.name, version.semver)
    if options.engine == "triton":
        serving = version.serving
        text = triton.model_config(
            version.name,
            version.model_version,
            version.signature,
            version.batching,
            serving.hardware,
        )
        data = {triton.CONFIG_FILE: text}
    else:
        if any(t.dtype == spec.DType.BYTES for t in version.signature.inputs):
            raise errors.SpecError(f"{version.name}: the mlops engine does not serve BYTES inputs")
        data = {"settings.json": json.dumps(dict(version.settings), indent=2, sort_keys=True)}
    meta = _meta(f"{name}-config", options, labels(version.name, SERVER, version.semver))
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def _paths(version: VersionInput, options: Options) -> tuple[str, str]:
    """Where the model file and the config go inside the model repository volume."""
    if options.engine == "triton":
        layout = triton.Layout(version.name, version.model_version)
        return f"{MODELS_DIR}/{layout.model}", f"{MODELS_DIR}/{layout.config}"
    directory = f"{MODELS_DIR}/{version.name}/{version.semver}"
    return f"{directory}/model.onnx", f"{directory}/settings.json"


# Runs in the fetch image: download the registered version, check its sha256, lay it out.
FETCH_SCRIPT = """set -eu
staging="$(dirname "$MODEL_PATH")/.staging"
mlflow artifacts download --artifact-uri "$MODEL_URI" --dst-path "$staging"
mkdir -p "$(dirname "$MODEL_PATH")" "$(dirname "$CONFIG_PATH")"
mv "$staging/model.onnx" "$MODEL_PATH"
rm -rf "$staging"
echo "$MODEL_SHA256  $MODEL_PATH" | sha256sum -c -
cp "$CONFIG_SOURCE" "$CONFIG_PATH"
"""


def _fetch_container(version: VersionInput, options: Options) -> Obj:
    model_path, config_path = _paths(version, options)
    source = triton.CONFIG_FILE if options.engine == "triton" else "settings.json"
    env = {
        "MLFLOW_TRACKING_URI": options.registry_uri,
        "MODEL_URI": f"models:/{version.name}/{version.model_version}",
        "MODEL_SHA256": version.sha256,
        "MODEL_PATH": model_path,
        "CONFIG_PATH": config_path,
        "CONFIG_SOURCE": f"/config/{source}",
    }
    return {
        "name": "fetch-model",
        "image": options.fetch_image,
        "command": ["sh", "-c", FETCH_SCRIPT],
        "env": [{"name": k, "value": v} for k, v in env.items()],
        # Registry credentials (MLFLOW_TRACKING_TOKEN, AWS_*), when the cluster has them.
        "envFrom": [{"secretRef": {"name": "mlops-registry", "optional": True}}],
        "volumeMounts": [
            {"name": "models", "mountPath": MODELS_DIR},
            {"name": "config", "mountPath": "/config", "readOnly": True},
        ],
    }


def _server_container(version: VersionInput, options: Options) -> Obj:
    hardware = version.serving.hardware
    gpus = max(hardware.count, 1) if hardware.accelerator != "none" else 0
    requests = {"cpu": _quantity(hardware.cpu), "memory": hardware.memory}
    limits = {"memory": hardware.memory, **({GPU: str(gpus)} if gpus else {})}
    if options.engine == "triton":
        command = [
            "tritonserver",
            f"--model-repository={MODELS_DIR}",
            "--model-control-mode=none",
            "--strict-readiness=true",
            f"--http-port={HTTP_PORT}",
            f"--grpc-port={GRPC_PORT}",
            f"--metrics-port={METRICS_PORT}",
        ]
        ports = [("http", HTTP_PORT), ("grpc", GRPC_PORT), ("metrics", METRICS_PORT)]
    else:
        command = [
            "mlops",
            "serve",
            "--repository",
            MODELS_DIR,
            "--host",
            "0.0.0.0",
            "--port",
            str(HTTP_PORT),
            "--state-dir",
            "/tmp/mlops-engine",
        ]
        ports = [("http", HTTP_PORT)]

    def probe(path: str, period: int, failures: int) -> Obj:
        get = {"path": path, "port": "http"}
        return {"httpGet": get, "periodSeconds": period, "failureThreshold": failures}

    return {
        "name": "server",
        "image": options.image,
        "command": command,
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports],
        "resources": {"requests": requests | ({GPU: str(gpus)} if gpus else {}), "limits": limits},
        # Loading and warming a model can take minutes; liveness waits for the first ready.
        "startupProbe": probe("/v2/health/ready", 5, 120),
        "readinessProbe": probe("/v2/health/ready", 5, 3),
        "livenessProbe": probe("/v2/health/live", 10, 3),
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR, "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }


def _deployment(version: VersionInput, options: Options) -> Obj:
    name = workload_name(version.name, version.semver)
    lbl = labels(version.name, SERVER, version.semver)
    hardware = version.serving.hardware
    annotations = {
        f"{ANNOTATION}semver": version.semver,
        f"{ANNOTATION}model-version": str(version.model_version),
        f"{ANNOTATION}sha256": version.sha256,
        f"{ANNOTATION}settings": json.dumps(dict(version.settings), sort_keys=True),
    }
    metrics_port = METRICS_PORT if options.engine == "triton" else HTTP_PORT
    pod: Obj = {
        "initContainers": [_fetch_container(version, options)],
        "containers": [_server_container(version, options)],
        "volumes": [
            {"name": "models", "emptyDir": {}},
            {"name": "config", "configMap": {"name": f"{name}-config"}},
        ],
    }
    if hardware.accelerator != "none":
        pod["nodeSelector"] = {options.accelerator_label: hardware.accelerator}
        pod["tolerations"] = [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
    spec_: Obj = {
        "selector": {"matchLabels": {NAME: version.name, INSTANCE: name}},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
        },
        "revisionHistoryLimit": 3,
        "template": {
            "metadata": {
                "labels": lbl,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(metrics_port),
                },
            },
            "spec": pod,
        },
    }
    if _hpa(version, options) is None:
        # With an HPA the replica count is its to set; applying one here would fight it.
        spec_ = {"replicas": version.serving.replicas.min, **spec_}
    meta = _meta(name, options, lbl, annotations=annotations)
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec_}


def _service(version: VersionInput, options: Options) -> Obj:
    name = workload_name(version.name, version.semver)
    meta = _meta(name, options, labels(version.name, SERVER, version.semver))
    ports = [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP"}]
    if options.engine == "triton":
        ports.append(
            {
                "name": "grpc",
                "port": GRPC_PORT,
                "targetPort": "grpc",
                "protocol": "TCP",
                "appProtocol": "kubernetes.io/h2c",
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": {NAME: version.name, INSTANCE: name},
            "ports": ports,
        },
    }


def _hpa(version: VersionInput, options: Options) -> Obj | None:
    serving = version.serving
    scaling, replicas = serving.autoscaling, serving.replicas
    if scaling is None or replicas.max == replicas.min:
        return None
    if scaling.metric == "queue_depth":
        metric, target = "mlops_queue_depth", scaling.target
    else:
        # DCGM exporter reports percent; a target <= 1 is read as a fraction.
        metric = "DCGM_FI_DEV_GPU_UTIL"
        target = scaling.target * 100 if scaling.target <= 1 else scaling.target
    name = workload_name(version.name, version.semver)
    pods = {
        "metric": {"name": metric},
        "target": {"type": "AverageValue", "averageValue": _quantity(target)},
    }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(name, options, labels(version.name, SERVER, version.semver)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": replicas.min,
            "maxReplicas": replicas.max,
            "metrics": [{"type": "Pods", "pods": pods}],
        },
    }


def _quantity(value: float) -> str:
    """A Kubernetes quantity: whole numbers as is, fractions in milli-units (0.5 -> 500m)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"
