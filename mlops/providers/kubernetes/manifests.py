"""Pure builders of the Kubernetes objects that serve one model version, and of its route.

Per version: a ConfigMap (the engine's `settings.json`, or Triton's `config.pbtxt`), a
Deployment that runs the version's own image by digest (the model and the engine baked in;
nothing is fetched at start), a Service and, when the spec asks for autoscaling, a KEDA
ScaledObject. Per model: one Gateway API HTTPRoute that splits traffic by weight. With
`engine: triton`, Triton (by digest) serves the model file that an init container copies out
of the version's image. `KubernetesRuntime` sends exactly these dicts, and `render_manifests`
prints them, so what is reviewed is what is applied.
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
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# MLflow version tags apply records after the push (mlops.providers.mlflow.tags): the
# reference deployments use (REPOSITORY@sha256:...) and the bare manifest digest.
IMAGE_REFERENCE_TAG, IMAGE_DIGEST_TAG = "image_reference", "image_digest"


def by_digest(reference: str, what: str) -> str:
    """`reference` if it names an image by digest and nothing else (no tag); else ConfigError."""
    name = reference.split("@", 1)[0]
    tagged = ":" in name.rsplit("/", 1)[-1]
    if len(reference) > 512 or not _IMAGE.match(reference) or not _DIGEST.search(reference):
        raise errors.ConfigError(f"{what} {reference!r} is not an image reference by digest")
    if tagged:
        raise errors.ConfigError(f"{what} {reference!r}: drop the tag, the digest alone pins it")
    return reference


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
    engine: Literal["triton", "mlops"] = "mlops"
    triton_image: str | None = None  # tritonserver@sha256:... (engine: triton needs it)
    accelerator_label: str = "mlops.dev/accelerator"  # node label carrying the GPU model
    hostnames: tuple[str, ...] = field(default_factory=tuple)
    prometheus_url: str = "http://prometheus.monitoring.svc:9090"  # KEDA's trigger source

    def __post_init__(self) -> None:
        if self.triton_image is not None:
            by_digest(self.triton_image, "kubernetes.image")
        if self.engine == "triton" and self.triton_image is None:
            raise errors.ConfigError(
                "kubernetes.engine: triton needs kubernetes.image: "
                "nvcr.io/nvidia/tritonserver@sha256:... (by digest)"
            )


@dataclass(frozen=True)
class VersionInput:
    """Everything one version's objects are built from. `settings` is the engine settings.json
    of the plan (signature, batching); `serving` gives hardware, replicas and autoscaling;
    `image` is the version's own image by digest (registry tag `image_digest`)."""

    name: str
    semver: str
    model_version: int  # the registry's integer version: Triton's version directory
    sha256: str
    settings: Mapping[str, Any]
    serving: spec.Serving
    image: str

    def __post_init__(self) -> None:
        by_digest(self.image, f"{self.name}@{self.semver} image")

    @property
    def signature(self) -> spec.Signature:
        return spec.Signature.model_validate(self.settings["signature"])

    @property
    def batching(self) -> spec.Batching:
        return spec.Batching.model_validate(self.settings.get("batching") or {})


SHADOW_FILE = "shadow.json"
SHADOW_DIR = "/etc/mlops/shadow"


def shadow_config_name(model: str) -> str:
    """The model's remote-shadow ConfigMap (route.shadow_config), mounted by its engine pods."""
    return f"{model}-shadow"


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
    """ConfigMap, Deployment, Service and (when autoscaling) a KEDA ScaledObject, in apply
    order."""
    objects = [
        _config_map(version, options),
        _deployment(version, options),
        _service(version, options),
    ]
    scaler = _scaled_object(version, options)
    return [*objects, scaler] if scaler else objects


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


def _version_dir(version: VersionInput) -> str:
    """Where the version's image keeps its model and settings (`images` model layer)."""
    return f"{MODELS_DIR}/{version.name}/{version.semver}"


# Runs in the version's image (python3 is its runtime): copy the baked model into Triton's
# layout, check its sha256 against the registry's record, add the config.pbtxt.
STAGE_SCRIPT = """import hashlib, os, shutil, sys
source, target, config, sha = sys.argv[1:5]
digest = hashlib.sha256(open(source, "rb").read()).hexdigest()
if digest != sha:
    sys.exit(f"{source}: sha256 {digest} is not the registered {sha}")
os.makedirs(os.path.dirname(target), exist_ok=True)
shutil.copyfile(source, target)
shutil.copyfile(config, os.path.join(os.path.dirname(os.path.dirname(target)), "config.pbtxt"))
"""


def _stage_container(version: VersionInput) -> Obj:
    """Triton only: lay the version's model out as NAME/<integer>/model.onnx + config.pbtxt."""
    layout = triton.Layout(version.name, version.model_version)
    return {
        "name": "stage-model",
        "image": version.image,
        "command": [
            "python3",
            "-c",
            STAGE_SCRIPT,
            f"{_version_dir(version)}/model.onnx",
            f"{STAGING_DIR}/{layout.model}",
            f"/config/{triton.CONFIG_FILE}",
            version.sha256,
        ],
        "volumeMounts": [
            {"name": "models", "mountPath": STAGING_DIR},
            {"name": "config", "mountPath": "/config", "readOnly": True},
        ],
        "securityContext": _SECURITY,
    }


STAGING_DIR = "/triton-models"
_SECURITY: Obj = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def _server_container(version: VersionInput, options: Options) -> Obj:
    hardware = version.serving.hardware
    gpus = max(hardware.count, 1) if hardware.accelerator != "none" else 0
    requests = {"cpu": _quantity(hardware.cpu), "memory": hardware.memory}
    limits = {"memory": hardware.memory, **({GPU: str(gpus)} if gpus else {})}
    container: Obj
    if options.engine == "triton":
        assert options.triton_image is not None  # Options refuses triton without one
        container = {
            "name": "server",
            "image": options.triton_image,
            "command": [
                "tritonserver",
                f"--model-repository={STAGING_DIR}",
                "--model-control-mode=none",
                "--strict-readiness=true",
                f"--http-port={HTTP_PORT}",
                f"--grpc-port={GRPC_PORT}",
                f"--metrics-port={METRICS_PORT}",
                # Latency gates read nv_inference_first_response_histogram_ms (Triton 24.08+).
                "--metrics-config=histogram_latencies=true",
            ],
            "ports": [("http", HTTP_PORT), ("grpc", GRPC_PORT), ("metrics", METRICS_PORT)],
            "volumeMounts": [{"name": "models", "mountPath": STAGING_DIR, "readOnly": True}],
            "securityContext": _SECURITY,
        }
    else:
        # The image's entrypoint is `mlops serve`; its model and settings are baked in. The
        # plan's settings.json (batching changes) is mounted over the baked one.
        container = {
            "name": "server",
            "image": version.image,
            "args": [
                "--repository",
                MODELS_DIR,
                "--host",
                "0.0.0.0",
                "--port",
                str(HTTP_PORT),
                "--load-all",
                "--state-dir",
                "/tmp/mlops-engine",
            ],
            "ports": [("http", HTTP_PORT)],
            "volumeMounts": [
                {
                    "name": "config",
                    "mountPath": f"{_version_dir(version)}/settings.json",
                    "subPath": "settings.json",
                    "readOnly": True,
                },
                {"name": "tmp", "mountPath": "/tmp"},
                {"name": "shadow", "mountPath": SHADOW_DIR, "readOnly": True},
            ],
            # The primary mirrors to the model's shadow and compares (remote_shadow); the
            # kubelet updates this directory when the ConfigMap changes: no restart.
            "env": [{"name": "MLOPS_SHADOW_FILE", "value": f"{SHADOW_DIR}/{SHADOW_FILE}"}],
            "securityContext": {
                **_SECURITY,
                "runAsNonRoot": True,
                "readOnlyRootFilesystem": True,
            },
        }

    def probe(path: str, period: int, failures: int) -> Obj:
        get = {"path": path, "port": "http"}
        return {"httpGet": get, "periodSeconds": period, "failureThreshold": failures}

    ports = container.pop("ports")
    mounts, security = container.pop("volumeMounts"), container.pop("securityContext")
    return {
        **container,
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports],
        "resources": {"requests": requests | ({GPU: str(gpus)} if gpus else {}), "limits": limits},
        # Loading and warming a model can take minutes; liveness waits for the first ready.
        "startupProbe": probe("/v2/health/ready", 5, 120),
        "readinessProbe": probe("/v2/health/ready", 5, 3),
        "livenessProbe": probe("/v2/health/live", 10, 3),
        "volumeMounts": mounts,
        "securityContext": security,
    }


def _deployment(version: VersionInput, options: Options) -> Obj:
    name = workload_name(version.name, version.semver)
    lbl = labels(version.name, SERVER, version.semver)
    hardware = version.serving.hardware
    annotations = {
        f"{ANNOTATION}semver": version.semver,
        f"{ANNOTATION}model-version": str(version.model_version),
        f"{ANNOTATION}sha256": version.sha256,
        f"{ANNOTATION}image": version.image,
        f"{ANNOTATION}settings": json.dumps(dict(version.settings), sort_keys=True),
    }
    metrics_port = METRICS_PORT if options.engine == "triton" else HTTP_PORT
    config_volume = {"name": "config", "configMap": {"name": f"{name}-config"}}
    pod: Obj
    if options.engine == "triton":
        pod = {
            "initContainers": [_stage_container(version)],
            "containers": [_server_container(version, options)],
            "volumes": [{"name": "models", "emptyDir": {}}, config_volume],
        }
    else:
        pod = {
            "containers": [_server_container(version, options)],
            "volumes": [
                config_volume,
                {"name": "tmp", "emptyDir": {}},
                {
                    "name": "shadow",
                    "configMap": {"name": shadow_config_name(version.name), "optional": True},
                },
            ],
        }
    pod["automountServiceAccountToken"] = False  # the model server never calls the API
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
    if _scaled_object(version, options) is None:
        # With an autoscaler the replica count is its to set; applying one here would fight it.
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


KEDA_API = "keda.sh/v1alpha1"


def _scaled_object(version: VersionInput, options: Options) -> Obj | None:
    """A KEDA ScaledObject with a Prometheus trigger (KEDA serves the metric to the HPA it
    creates, so no Prometheus Adapter rule is needed); only when the spec autoscales between
    two different counts. `queue_depth`: requests waiting in the version's batch queues
    (engine `mlops_queue_depth`, Triton `nv_inference_pending_request_count`), summed over its
    pods, `target` per replica. `gpu_utilization`: DCGM exporter's `DCGM_FI_DEV_GPU_UTIL`
    averaged over the version's pods (percent; a target <= 1 is read as a fraction)."""
    serving = version.serving
    scaling, replicas = serving.autoscaling, serving.replicas
    if scaling is None or replicas.max == replicas.min:
        return None
    name = workload_name(version.name, version.semver)
    model = json.dumps(version.name)
    if scaling.metric == "queue_depth":
        if options.engine == "triton":
            series = f"nv_inference_pending_request_count{{model={model},"
            series += f'version="{version.model_version}"}}'
        else:
            series = f"mlops_queue_depth{{model={model},version={json.dumps(version.semver)}}}"
        query, metric_type, target = f"sum({series})", "AverageValue", scaling.target
    else:
        if version.serving.hardware.accelerator == "none":
            raise errors.SpecError(
                f"{version.name}: autoscaling on gpu_utilization needs an accelerator"
            )
        pods = f'namespace="{options.namespace}",pod=~"{name}-[a-z0-9]+-[a-z0-9]+"'
        query, metric_type = f"avg(DCGM_FI_DEV_GPU_UTIL{{{pods}}})", "Value"
        target = scaling.target * 100 if scaling.target <= 1 else scaling.target
    trigger = {
        "type": "prometheus",
        "name": scaling.metric.replace("_", "-"),
        "metricType": metric_type,
        "metadata": {
            "serverAddress": options.prometheus_url,
            "query": query,
            "threshold": f"{target:g}",
        },
    }
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": _meta(name, options, labels(version.name, SERVER, version.semver)),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": replicas.min,
            "maxReplicaCount": replicas.max,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "triggers": [trigger],
        },
    }


def _quantity(value: float) -> str:
    """A Kubernetes quantity: whole numbers as is, fractions in milli-units (0.5 -> 500m)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"
