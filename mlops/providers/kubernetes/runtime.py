"""The kubernetes target's Runtime: one Deployment per model version, traffic by HTTPRoute.

Objects come from `manifests`/`route` (pure) and go out through a `Cluster`
(server-side apply). `render_manifests` runs the same builders without a cluster, so
`mlops manifests` shows exactly what `apply` would send. Pods run the version's own image by
the digest recorded on the registry version (MLflow tag `image_digest`, written by apply when
`images:` is configured): the local `artifact` path given to `load` is never uploaded.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mlops import errors
from mlops import workspace as workspace_
from mlops.providers import base
from mlops.providers.kubernetes import cluster as k8s_cluster
from mlops.providers.kubernetes import manifests as m
from mlops.providers.kubernetes import route as k8s_route
from mlops.providers.metrics import prometheus
from mlops.spec import engine as engine_
from mlops.spec import models as spec
from mlops.state import models as state

APPS, ROUTES = "apps/v1", f"{m.GATEWAY_GROUP}/v1"
# Variables that used to stand in for mlops.yaml keys, and the key that replaced each: a set
# one is refused rather than silently ignored.
RETIRED_ENV = {
    "MLOPS_K8S_ENGINE": "engine",
    "MLOPS_K8S_TRITON_IMAGE": "image",
    "MLOPS_K8S_ENGINE_IMAGE": "image",
    "MLOPS_K8S_ENGINE_DIGEST": "image (NAME@sha256:...)",
    "MLOPS_K8S_FETCH_IMAGE": "fetch_image",
    "MLOPS_K8S_REGISTRY_URI": "registry_uri",
    "MLOPS_K8S_HOSTNAMES": "hostnames",
    "MLOPS_K8S_ACCELERATOR_LABEL": "accelerator_label",
}
NO_IMAGE = (
    "{name}@{semver} has no image on record (MLflow tag image_digest): configure images: "
    "{{base, repository}} in mlops.yaml so apply builds, tests and pushes it"
)


def options_for(
    ws: workspace_.Workspace,
    *,
    engine: str | None = None,
    env: Mapping[str, str] | None = None,
) -> m.Options:
    """Options from mlops.yaml `kubernetes`; `engine` (`mlops manifests --engine`) wins over
    its `engine` key. `kubernetes.image` is Triton's image (by digest)."""
    env = os.environ if env is None else env
    for name, key in RETIRED_ENV.items():
        if name in env:
            raise errors.ConfigError(
                f"{name} is no longer read: set kubernetes.{key} in mlops.yaml instead"
            )
    config = ws.config.kubernetes
    chosen = engine or config.engine
    if chosen not in ("triton", "mlops"):
        raise errors.ConfigError(f"engine must be 'triton' or 'mlops', not {chosen!r}")
    metrics = ws.config.metrics
    prometheus = metrics if metrics.startswith(("http://", "https://")) else None
    return m.Options(
        namespace=config.namespace,
        gateway=m.GatewayRef.parse(config.gateway_ref) if config.gateway_ref else None,
        engine="triton" if chosen == "triton" else "mlops",
        triton_image=config.image if chosen == "triton" else None,
        accelerator_label=config.accelerator_label or m.Options.accelerator_label,
        hostnames=tuple(config.hostnames),
        **({"prometheus_url": prometheus} if prometheus else {}),
    )


def image_of(version: state.RegistryVersion) -> str | None:
    """The version's image by digest, as apply recorded it (None: never built): the
    `image_reference` tag, or an `image_digest` tag that carries the repository too."""
    for tag in (m.IMAGE_REFERENCE_TAG, m.IMAGE_DIGEST_TAG):
        value = getattr(version, tag, None)
        if isinstance(value, str) and "@" in value:
            return value
    return None


def plan_problems(
    ws: workspace_.Workspace,
    deployments: Sequence[spec.ModelDeployment],
    registry: Mapping[str, state.RegistryModel],
) -> list[str]:
    """Planning errors of the kubernetes target: without `images:` nothing builds an image,
    so every spec'd version must already have one recorded."""
    if ws.config.target != "kubernetes" or ws.config.images is not None:
        return []
    out = []
    for deployment in deployments:
        semver = deployment.spec.model.version
        model = registry.get(deployment.name)
        version = model.versions.get(semver) if model else None
        if version is None or image_of(version) is None:
            out.append(NO_IMAGE.format(name=deployment.name, semver=semver))
    return out


def version_input(
    deployment: spec.ModelDeployment,
    version: state.RegistryVersion,
    settings: Mapping[str, Any] | None = None,
    *,
    image: str | None = None,
) -> m.VersionInput:
    """What one version's objects are built from: the registered version (integer version,
    sha256, image digest), the plan's engine settings (signature, batching) and the spec's
    serving. `image` stands in for a version whose image is not recorded yet."""
    from mlops.providers.kubernetes import triton

    chosen = image or image_of(version)
    if chosen is None:
        raise errors.RegistryError(NO_IMAGE.format(name=version.name, semver=version.semver))
    return m.VersionInput(
        name=version.name,
        semver=version.semver,
        model_version=triton.version_number(version.registry_version),
        sha256=version.sha256,
        settings=dict(settings if settings is not None else engine_.engine_settings(deployment)),
        serving=deployment.spec.serving,
        image=chosen,
    )


def render_manifests(
    deployment: spec.ModelDeployment,
    version: state.RegistryVersion,
    options: m.Options,
    *,
    weights: Mapping[str, int] | None = None,
    shadow: state.ShadowRoute | None = None,
    image: str | None = None,
) -> list[m.Obj]:
    """Every object for one version plus the model's route (default: all traffic to it)."""
    item = version_input(deployment, version, image=image)
    objects = m.version_objects(item, options)
    route = k8s_route.build_route(
        item.name,
        {item.semver: 100} if weights is None else weights,
        shadow,
        {item.semver: item.model_version},
        options,
    )
    return [*objects, *([route] if route else [])]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (config.pbtxt, the staging script) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(objects: Sequence[m.Obj]) -> str:
    return yaml.dump_all(
        list(objects), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100
    )


class KubernetesRuntime:
    """Runtime Protocol over a cluster. `cluster` and `registry` default to the workspace's
    (kubeconfig context, MLflow registry), both created on first use."""

    def __init__(
        self,
        workspace: workspace_.Workspace,
        *,
        options: m.Options | None = None,
        cluster: k8s_cluster.Cluster | None = None,
        registry: base.Registry | None = None,
        ready_timeout: float = 900.0,
        poll_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.workspace = workspace
        self.options = options or options_for(workspace)
        self._cluster = cluster
        self._registry = registry
        self.ready_timeout, self.poll_seconds, self.sleep = ready_timeout, poll_seconds, sleep

    @property
    def cluster(self) -> k8s_cluster.Cluster:
        if self._cluster is None:
            context = self.workspace.config.kubernetes.context
            self._cluster = k8s_cluster.DynamicCluster(context, self.options.namespace)
        return self._cluster

    @property
    def registry(self) -> base.Registry:
        if self._registry is None:
            from mlops.providers import factory

            self._registry = factory.registry(self.workspace)
        return self._registry

    # -- reads ---------------------------------------------------------------------------------

    def metrics(self, url: str) -> prometheus.PrometheusMetrics:
        """Gates over the cluster's Prometheus at `url`, in the engine's metric names: Triton
        labels series with its integer version, looked up once per version."""
        if self.options.engine == "mlops":
            return prometheus.PrometheusMetrics(url)
        known: dict[tuple[str, str], str] = {}

        def triton_version(model: str, semver: str) -> str:
            if (model, semver) not in known:
                version = self.registry.get_version(model, semver)
                if version is None:
                    raise errors.RegistryError(f"{model}@{semver} is not registered")
                known[(model, semver)] = version.registry_version
            return known[(model, semver)]

        return prometheus.PrometheusMetrics(url, dialect="triton", version_label=triton_version)

    def reachable(self) -> bool:
        return self.cluster.reachable()

    def inference_url(self) -> str:
        gateway = self.options.gateway
        if gateway is None:
            raise errors.ConfigError("set kubernetes.gateway_ref in mlops.yaml to reach models")
        live = self.cluster.get(ROUTES, "Gateway", gateway.name, gateway.namespace)
        addresses = ((live or {}).get("status") or {}).get("addresses") or []
        if not addresses:
            raise errors.TransientError(f"gateway {gateway.name} has no address yet")
        return f"http://{addresses[0]['value']}"

    @property
    def request_rates(self) -> Mapping[str, float]:
        return {}  # no engine counters reach here: traffic comes from the caller (Prometheus)

    def worker_admin_urls(self) -> list[str]:
        return []  # pods are not reachable from the controller's machine

    def served_artifact(self, name: str, semver: str) -> Path | None:
        return None  # baked into the version's image (Triton's init container checks sha256)

    def refresh(self, names: Sequence[str] | None = None) -> dict[str, state.RuntimeModel]:
        """One list call per kind (Deployments, HTTPRoutes), filtered by label."""
        deployments = self._deployments()
        routes = self.cluster.list(ROUTES, "HTTPRoute", f"{m.SELECTOR},{m.COMPONENT}={m.TRAFFIC}")
        services = {d["metadata"]["name"]: _semver(d) for d in deployments}
        models: dict[str, dict[str, Any]] = {}
        for item in deployments:
            model = item["metadata"]["labels"][m.NAME]
            entry = models.setdefault(model, {"loaded": {}, "config": {}, "replicas": []})
            entry["loaded"][_semver(item)] = "ready" if _available(item) else "loading"
            entry["config"][_semver(item)] = _annotation_json(item, "settings")
            entry["replicas"].append(item)
        for route in routes:
            model = route["metadata"]["labels"][m.NAME]
            weights, shadow, generation = k8s_route.read_route(route, services)
            entry = models.setdefault(model, {"loaded": {}, "config": {}, "replicas": []})
            entry |= {"weights": weights, "shadow": shadow, "generation": generation}
        wanted = set(names) if names is not None else set(models)
        return {
            name: state.RuntimeModel(
                name=name,
                loaded=entry["loaded"],
                weights=entry.get("weights", {}),
                shadow=entry.get("shadow"),
                generation=entry.get("generation", 0),
                replicas=max((_replicas(d)[0] for d in entry["replicas"]), default=0),
                replicas_alive=min((_replicas(d)[1] for d in entry["replicas"]), default=0),
                config=entry["config"],
            )
            for name, entry in sorted(models.items())
            if name in wanted
        }

    # -- changes -------------------------------------------------------------------------------

    def ensure_running(self, replicas: int) -> None:
        """Reconcile replicas (`replicas`, the shared engine's count, does not apply here):
        a managed Deployment that mlops sizes (no autoscaler) and whose count drifted from its
        spec is applied again. A count another field manager owns (an HPA) is reported as a
        FieldConflict naming the field and its owner, never forced."""
        from mlops.spec import load

        try:
            specs = {
                item.name: item.deployment
                for item in load.load_specs([self.workspace.root / "specs"], self.workspace.root)
            }
        except errors.SpecError:
            return  # specs that do not load are planning's to report
        for item in self._deployments():
            declared = (item.get("spec") or {}).get("replicas")
            model, semver = item["metadata"]["labels"][m.NAME], _semver(item)
            wanted = specs.get(model)
            if wanted is None or declared is None:
                continue  # not in the specs any more (plan retires it) or autoscaled
            serving = wanted.spec.serving
            autoscaled = serving.autoscaling is not None and (
                serving.replicas.min != serving.replicas.max
            )
            if autoscaled or declared == serving.replicas.min:
                continue
            settings = _annotation_json(item, "settings")
            for obj in self.manifests_for(model, semver, settings):
                if obj["kind"] == "Deployment":
                    self.cluster.apply(obj)

    def engine(self) -> state.EngineState | None:
        return None  # no engine shared by the models: each Deployment has its own replicas

    def scale(self, replicas: int) -> None:
        raise errors.PermanentError("the kubernetes target has no shared engine to scale")

    def manifests_for(self, name: str, semver: str, settings: Mapping[str, Any]) -> list[m.Obj]:
        """The objects `load` applies for one version (the route is applied separately)."""
        version = self.registry.get_version(name, semver)
        if version is None:
            raise errors.RegistryError(f"{name}@{semver} is not registered")
        return m.version_objects(
            version_input(self._spec(name, version), version, settings), self.options
        )

    def load(self, name: str, semver: str, artifact: Any, settings: Mapping[str, Any]) -> None:
        """Apply the version's objects, wait until its Deployment is available, then add its
        pinned-version rule to the route (no weight)."""
        for obj in self.manifests_for(name, semver, settings):
            self.cluster.apply(obj)
        self._wait_available(name, semver)
        live = self.refresh([name]).get(name) or state.RuntimeModel(name=name)
        self._apply_route(name, live.weights, live.shadow)

    def unload(self, name: str, semver: str) -> None:
        """Refused while the version takes traffic; otherwise drop its rule and its objects."""
        live = self.refresh([name]).get(name) or state.RuntimeModel(name=name)
        if live.weights.get(semver) or (live.shadow and live.shadow.version == semver):
            raise errors.PermanentError(f"{name}@{semver} still receives traffic: move it first")
        if semver in live.loaded:
            self._apply_route(name, live.weights, live.shadow, drop=semver)
        workload = m.workload_name(name, semver)
        for api_version, kind, object_name in (
            (m.KEDA_API, "ScaledObject", workload),
            ("v1", "Service", workload),
            (APPS, "Deployment", workload),
            ("v1", "ConfigMap", f"{workload}-config"),
        ):
            self.cluster.delete(api_version, kind, object_name)

    def set_traffic(
        self,
        name: str,
        weights: Mapping[str, int],
        shadow: state.ShadowRoute | None,
        *,
        rollback: bool = False,
    ) -> int:
        """Apply the route and return its generation once the gateway has accepted it. The
        HTTPRoute in the API server is the persisted state, so a rollback needs nothing more."""
        return self._apply_route(name, weights, shadow)

    # -- helpers -------------------------------------------------------------------------------

    def _deployments(self) -> list[m.Obj]:
        return self.cluster.list(APPS, "Deployment", f"{m.SELECTOR},{m.COMPONENT}={m.SERVER}")

    def _apply_route(
        self,
        name: str,
        weights: Mapping[str, int],
        shadow: state.ShadowRoute | None,
        drop: str | None = None,
    ) -> int:
        loaded = {
            _semver(d): int(d["metadata"]["annotations"][f"{m.ANNOTATION}model-version"])
            for d in self._deployments()
            if d["metadata"]["labels"][m.NAME] == name and _semver(d) != drop
        }
        route = k8s_route.build_route(name, weights, shadow, loaded, self.options)
        if route is None:
            self.cluster.delete(ROUTES, "HTTPRoute", k8s_route.route_name(name))
            self.cluster.delete("v1", "ConfigMap", m.shadow_config_name(name))
            return 0
        if self.options.engine == "mlops":
            # First the primary pods' shadow (they mirror and compare), then the route.
            self.cluster.apply(k8s_route.shadow_config(name, shadow, self.options))
        live = self.cluster.apply(route)
        services = {m.workload_name(name, v): v for v in loaded}
        got_weights, got_shadow, generation = k8s_route.read_route(live, services)
        if got_weights != dict(weights) or got_shadow != shadow:
            raise errors.TransientError(f"route {name} did not read back as applied")
        if self.options.gateway is not None:
            self._wait_accepted(name, generation)
        return generation

    def _wait_accepted(self, name: str, generation: int) -> None:
        """Bounded wait for the gateway controller to accept this generation of the route."""
        deadline = time.monotonic() + min(self.ready_timeout, 120.0)
        while True:
            live = self.cluster.get(ROUTES, "HTTPRoute", k8s_route.route_name(name)) or {}
            for parent in (live.get("status") or {}).get("parents") or []:
                for cond in parent.get("conditions") or []:
                    if cond.get("type") != "Accepted":
                        continue
                    if int(cond.get("observedGeneration") or 0) < generation:
                        continue
                    if cond.get("status") == "True":
                        return
                    raise errors.PermanentError(
                        f"gateway refused route {name}: {cond.get('reason')}: {cond.get('message')}"
                    )
            if time.monotonic() >= deadline:
                raise errors.TransientError(f"gateway did not accept route {name} in time")
            self.sleep(self.poll_seconds)

    def _wait_available(self, name: str, semver: str) -> None:
        workload = m.workload_name(name, semver)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            live = self.cluster.get(APPS, "Deployment", workload)
            if live is not None and _available(live):
                return
            if time.monotonic() >= deadline:
                raise errors.TransientError(
                    f"{name}@{semver}: Deployment {workload} is not available"
                )
            self.sleep(self.poll_seconds)

    def cluster_report(self, names: Sequence[str] | None = None) -> dict[str, Any]:
        """What the cluster says, for `mlops status`: per model and version the Deployment's
        replicas (declared, ready, and which field manager owns the count), each pod's
        readiness, the route's weights, shadow and Accepted condition; the gateway's address
        or what is missing. One list call per kind."""
        wanted = set(names) if names is not None else None
        deployments = self._deployments()
        pods = self.cluster.list("v1", "Pod", f"{m.SELECTOR},{m.COMPONENT}={m.SERVER}")
        routes = self.cluster.list(ROUTES, "HTTPRoute", f"{m.SELECTOR},{m.COMPONENT}={m.TRAFFIC}")
        models: dict[str, dict[str, Any]] = {}
        for item in deployments:
            model = item["metadata"]["labels"][m.NAME]
            if wanted is not None and model not in wanted:
                continue
            ready = _replicas(item)[1]
            instance = item["metadata"]["name"]
            models.setdefault(model, {"versions": {}, "route": None})["versions"][_semver(item)] = {
                "deployment": instance,
                "replicas": (item.get("spec") or {}).get("replicas"),
                "ready": ready,
                "replicas_owner": _owner(item, ("spec", "replicas")),
                "image": _annotation(item, "image"),
                "pods": [
                    _pod(pod)
                    for pod in pods
                    if (pod["metadata"].get("labels") or {}).get(m.INSTANCE) == instance
                ],
            }
        services = {d["metadata"]["name"]: _semver(d) for d in deployments}
        for route in routes:
            model = route["metadata"]["labels"][m.NAME]
            if wanted is not None and model not in wanted:
                continue
            weights, shadow, generation = k8s_route.read_route(route, services)
            models.setdefault(model, {"versions": {}, "route": None})["route"] = {
                "name": route["metadata"]["name"],
                "generation": generation,
                "weights": weights,
                "shadow": shadow.model_dump() if shadow else None,
                "accepted": _accepted(route, generation),
            }
        return {"models": models, "gateway": self._gateway_report()}

    def _gateway_report(self) -> dict[str, Any]:
        gateway = self.options.gateway
        if gateway is None:
            return {"ref": None, "address": None, "missing": "kubernetes.gateway_ref in mlops.yaml"}
        ref = f"{gateway.namespace + '/' if gateway.namespace else ''}{gateway.name}"
        try:
            live = self.cluster.get(ROUTES, "Gateway", gateway.name, gateway.namespace)
        except errors.ConfigError as exc:  # 403: the Role covers only its own namespace
            return {"ref": ref, "address": None, "missing": f"cannot read Gateway {ref}: {exc}"}
        if live is None:
            return {"ref": ref, "address": None, "missing": f"Gateway {ref} does not exist"}
        addresses = (live.get("status") or {}).get("addresses") or []
        if not addresses:
            return {"ref": ref, "address": None, "missing": f"Gateway {ref} has no address yet"}
        return {"ref": ref, "address": str(addresses[0].get("value")), "missing": None}

    def _spec(self, name: str, version: state.RegistryVersion) -> spec.ModelDeployment:
        """The workspace's spec of `name`, for hardware, replicas and autoscaling: serving is
        per deployment, so a rollback target that the spec no longer names gets the same."""
        from mlops.spec import load

        try:
            loaded = load.load_specs([self.workspace.root / "specs"], self.workspace.root)
        except errors.SpecError:
            loaded = []
        for item in loaded:
            if item.name == name:
                return item.deployment
        raise errors.PermanentError(f"{name}: no spec under specs/ declares its serving settings")


def _semver(item: Mapping[str, Any]) -> str:
    return str(item["metadata"]["annotations"][f"{m.ANNOTATION}semver"])


def _annotation_json(item: Mapping[str, Any], key: str) -> dict[str, Any]:
    try:
        value = json.loads(item["metadata"]["annotations"][f"{m.ANNOTATION}{key}"])
    except (KeyError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _annotation(item: Mapping[str, Any], key: str) -> str | None:
    value = (item["metadata"].get("annotations") or {}).get(f"{m.ANNOTATION}{key}")
    return value if isinstance(value, str) else None


def _owner(item: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
    """The field manager owning `path` (managedFields, FieldsV1), if any."""
    for entry in item["metadata"].get("managedFields") or []:
        node: Any = (entry or {}).get("fieldsV1") or {}
        for part in path:
            node = node.get(f"f:{part}") if isinstance(node, dict) else None
        if node is not None:
            return str(entry.get("manager"))
    return None


def _pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    status = pod.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    ready = conditions.get("Ready") or {}
    containers = status.get("containerStatuses") or []
    waiting = [
        ((c.get("state") or {}).get("waiting") or {}).get("reason")
        for c in containers
        if (c.get("state") or {}).get("waiting")
    ]
    return {
        "name": pod["metadata"]["name"],
        "phase": status.get("phase"),
        "ready": ready.get("status") == "True",
        "restarts": sum(int(c.get("restartCount") or 0) for c in containers),
        "reason": ready.get("reason") or (waiting[0] if waiting else None),
    }


def _accepted(route: Mapping[str, Any], generation: int) -> dict[str, Any]:
    """The gateway's Accepted condition for this generation (None: not reported yet)."""
    for parent in (route.get("status") or {}).get("parents") or []:
        for cond in parent.get("conditions") or []:
            if cond.get("type") == "Accepted":
                current = int(cond.get("observedGeneration") or 0) >= generation
                return {
                    "status": cond.get("status") == "True" if current else None,
                    "reason": cond.get("reason"),
                    "message": cond.get("message"),
                    "observed_generation": cond.get("observedGeneration"),
                }
    return {"status": None, "reason": "no gateway has reported on it", "message": None}


def _replicas(item: Mapping[str, Any]) -> tuple[int, int]:
    status = item.get("status") or {}
    declared = (item.get("spec") or {}).get("replicas", status.get("replicas", 0))
    return int(declared or 0), int(status.get("readyReplicas") or 0)


def _available(item: Mapping[str, Any]) -> bool:
    """Rolled out (the controller saw this generation) with every replica ready."""
    status = item.get("status") or {}
    meta_generation = int(item["metadata"].get("generation") or 0)
    if int(status.get("observedGeneration") or 0) < meta_generation:
        return False
    declared, ready = _replicas(item)
    updated = int(status.get("updatedReplicas") or 0)
    return ready >= max(declared, 1) and updated >= max(declared, 1)


def render_workspace(
    ws: workspace_.Workspace,
    paths: Sequence[str | Path],
    options: m.Options,
    *,
    model_version: int | None = None,
    image: str | None = None,
) -> dict[str, list[m.Obj]]:
    """Objects for every spec under `paths` (default specs/), by deployment name. The integer
    version and the image digest come from the registry; `model_version` stands in for a
    version not registered yet (its sha256 is then the spec's pin or the artifact's own) and
    `image` for an image not recorded yet."""
    import hashlib

    from mlops.spec import load

    loaded = load.load_specs(list(paths) or [ws.root / "specs"], ws.root)
    registry: base.Registry | None = None
    out: dict[str, list[m.Obj]] = {}
    for item in loaded:
        model = item.deployment.spec.model
        version = None
        if model_version is None:
            if registry is None:
                from mlops.providers import factory

                registry = factory.registry(ws)
            version = registry.get_version(item.name, model.version)
            if version is None:
                raise errors.RegistryError(
                    f"{item.name}@{model.version} is not registered: run `mlops apply` first "
                    "or pass --model-version N (Triton needs the registry's integer version)"
                )
        else:
            sha = model.sha256
            if sha is None and item.artifact_path is not None and item.artifact_path.is_file():
                sha = hashlib.sha256(item.artifact_path.read_bytes()).hexdigest()
            if sha is None:
                raise errors.ArtifactError(f"{item.name}: no sha256 pin and no artifact file")
            version = state.RegistryVersion(
                name=item.name, semver=model.version, registry_version=str(model_version),
                sha256=sha, artifact_uri=model.artifact, signature=model.signature,
                baseline=model.baseline,
            )  # fmt: skip
        out[item.name] = render_manifests(item.deployment, version, options, image=image)
    return out
