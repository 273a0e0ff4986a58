"""What the API-server double stands in for, made real: each Deployment it accepts runs as
real containers of its image (podman, host network, loopback ports), its readiness is the
engine's /v2/health/ready, the HTTPRoutes' weights and mirrors are put in force by a real
proxy (Debian's nginx, mlops.providers.gateway, reloaded on change), and a real Prometheus
scrapes every container (file_sd targets kept here).

Faithful where it matters for a rollout: the container runs the Deployment's image by digest
with the Deployment's own arguments for the image's entrypoint (only --host/--port are moved
to loopback ports: pods have their own network namespace, containers here share the host's),
the plan's settings.json from the ConfigMap bind-mounted where the Deployment mounts it, a
read-only root filesystem with /tmp writable as in the pod spec. Not modelled: scheduling,
resource limits, probes' timing (readiness is polled when the API is read), Services (the
proxy reaches containers directly), the remote-shadow ConfigMap (its URL is a cluster DNS
name).

`kubernetes.engine: triton` pods (server container `tritonserver`): Triton cannot run here, so
the pod's serving container is the version's own mlops image (the stage-model init container's
image: the same model, the same V2 protocol), with the plan's settings from the Deployment's
annotation, and Prometheus scrapes, instead of that container, a stand-in exporter per pod
(`standin.EngineAsTriton`) that serves the container's live counters under Triton's metric
names and integer version label. The ConfigMap's config.pbtxt must parse as Triton's
ModelConfig for the model (what Triton would load). Not realised: the pinned route's URLRewrite
to Triton's integer version (the engine knows the version by its semver).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlops import fsio
from mlops.providers import gateway as gateway_mod
from mlops.providers.gateway import routes as gateway_routes
from mlops.providers.images import container as image_container
from mlops.providers.kubernetes import manifests, triton
from tests.k8s.standin import EngineAsTriton

READY_TIMEOUT_S = 120.0


@dataclass
class Pod:
    container_id: str
    port: int
    ready: bool = False
    exporter: EngineAsTriton | None = None  # engine: triton only

    @property
    def metrics_address(self) -> str:
        """What Prometheus scrapes: the Triton stand-in exporter, else the engine itself."""
        return self.exporter.address if self.exporter else f"127.0.0.1:{self.port}"


@dataclass
class Workload:
    template: str  # the pod template as JSON: a change replaces the pods
    pods: list[Pod] = field(default_factory=list)


class Kubelet:
    def __init__(self, client: Any, root: Path) -> None:
        self.client = client
        self.root = root
        self.gateway = gateway_mod.Gateway(root / "gateway")
        self.url = self.gateway.start()
        self.targets = root / "targets.json"
        fsio.atomic_write(self.targets, "[]")
        self.workloads: dict[str, Workload] = {}
        self.lock = threading.RLock()
        self.errors: list[str] = []

    @property
    def address(self) -> str:
        return self.url.removeprefix("http://")

    # -- Deployments -------------------------------------------------------------------------

    def deploy(self, deployment: dict[str, Any], store: dict[Any, Any]) -> None:
        """Bring the Deployment's pods to its template and replica count (in the background,
        as a cluster does: the API answers at once, readiness follows)."""
        name = deployment["metadata"]["name"]
        template = json.dumps(deployment["spec"]["template"], sort_keys=True)
        replicas = int(deployment["spec"].get("replicas", 1))
        settings = self._settings(deployment, store)
        if _is_triton(deployment):
            try:
                settings = self._triton_settings(deployment, store)
            except Exception as exc:  # what Triton would refuse to load: the test reads these
                self.errors.append(f"{deployment['metadata']['name']}: {exc}")
                return
        with self.lock:
            current = self.workloads.get(name)
            if current and current.template == template and len(current.pods) == replicas:
                return
        threading.Thread(
            target=self._roll, args=(name, deployment, template, replicas, settings), daemon=True
        ).start()

    def _settings(self, deployment: dict[str, Any], store: dict[Any, Any]) -> Path | None:
        config = deployment["metadata"]["name"] + "-config"
        for (plural, _, name), obj in store.items():
            if plural == "configmaps" and name == config and "settings.json" in obj["data"]:
                path: Path = self.root / "config" / config / "settings.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                fsio.atomic_write(path, str(obj["data"]["settings.json"]))
                return path
        return None

    def _triton_settings(self, deployment: dict[str, Any], store: dict[Any, Any]) -> Path:
        """Check the ConfigMap's config.pbtxt as Triton would load it; write the plan's engine
        settings (the Deployment's annotation) for the stand-in serving container."""
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2

        meta = deployment["metadata"]
        name, model = meta["name"], meta["labels"][manifests.NAME]
        config = store.get(("configmaps", meta["namespace"], f"{name}-config"))
        if config is None or triton.CONFIG_FILE not in config["data"]:
            raise RuntimeError(f"{name}: no {triton.CONFIG_FILE} in {name}-config")
        parsed = text_format.Parse(
            config["data"][triton.CONFIG_FILE], model_config_pb2.ModelConfig()
        )
        if parsed.name != model:
            raise RuntimeError(f"{name}: config.pbtxt names {parsed.name!r}, not {model!r}")
        path: Path = self.root / "config" / f"{name}-triton" / "settings.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        fsio.atomic_write(path, str(meta["annotations"][f"{manifests.ANNOTATION}settings"]))
        return path

    def _roll(
        self,
        name: str,
        deployment: dict[str, Any],
        template: str,
        replicas: int,
        settings: Path | None,
    ) -> None:
        try:
            with self.lock:
                current = self.workloads.get(name)
                keep = current.pods if current and current.template == template else []
            fresh = [self._start(deployment, settings) for _ in range(max(0, replicas - len(keep)))]
            with self.lock:
                old = self.workloads.get(name)
                pods = (keep + fresh)[:replicas]
                self.workloads[name] = Workload(template, pods)
                gone = [p for p in (old.pods if old else []) if p not in pods]
                gone += [p for p in keep + fresh if p not in pods]
                self._write_targets()
            self._stop(gone)
        except Exception as exc:  # a test reads these: nothing is swallowed silently
            self.errors.append(f"{name}: {exc}")

    def _start(self, deployment: dict[str, Any], settings: Path | None) -> Pod:
        pod_spec = deployment["spec"]["template"]["spec"]
        (container,) = pod_spec["containers"]
        port = image_container.free_port()
        volumes = {}
        if _is_triton(deployment):
            # The mlops image of the version in place of Triton, as its engine entrypoint runs.
            (stage,) = pod_spec["initContainers"]
            image = stage["image"]
            annotations = deployment["metadata"]["annotations"]
            model = deployment["metadata"]["labels"][manifests.NAME]
            semver = annotations[f"{manifests.ANNOTATION}semver"]
            args = ["--repository", manifests.MODELS_DIR, "--host", "127.0.0.1"]
            args += ["--port", str(port), "--load-all", "--state-dir", "/tmp/mlops-engine"]
            if settings is not None:
                bind = f"{manifests.MODELS_DIR}/{model}/{semver}/settings.json"
                volumes[str(settings)] = {"bind": bind, "mode": "ro"}
        else:
            image = container["image"]
            args = list(container.get("args") or [])
            for flag, value in (("--host", "127.0.0.1"), ("--port", str(port))):
                args[args.index(flag) + 1] = value
            for mount in container.get("volumeMounts") or []:
                if mount.get("subPath") == "settings.json" and settings is not None:
                    volumes[str(settings)] = {"bind": mount["mountPath"], "mode": "ro"}
        self._pull(image)
        started = self.client.containers.run(
            image,
            command=args,
            detach=True,
            network_mode="host",
            ulimits=image_container.ulimits(),
            healthcheck={"test": ["NONE"]},
            read_only=True,
            tmpfs={"/tmp": ""},
            volumes=volumes,
            labels={"io.mlops.role": "k8s-standin"},
        )
        pod = Pod(str(started.id), port)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._probe(pod):
            started.reload()
            if started.status == "exited" or time.monotonic() > deadline:
                log = image_container.log_tail(started)
                self._stop([pod])
                raise RuntimeError(f"{image} did not become ready: {log}")
            time.sleep(0.2)
        if _is_triton(deployment):
            annotations = deployment["metadata"]["annotations"]
            pod.exporter = EngineAsTriton(
                deployment["metadata"]["labels"][manifests.NAME],
                int(annotations[f"{manifests.ANNOTATION}model-version"]),
                annotations[f"{manifests.ANNOTATION}semver"],
                self._url(pod),
            )
        return pod

    def _pull(self, image: str) -> None:
        import docker.errors

        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            self.client.images.pull(image)

    def _probe(self, pod: Pod) -> bool:
        try:
            ready = httpx.get(f"http://127.0.0.1:{pod.port}/v2/health/ready", timeout=1.0)
            pod.ready = ready.status_code == 200
        except httpx.HTTPError:
            pod.ready = False
        return pod.ready

    def delete(self, name: str) -> None:
        with self.lock:
            workload = self.workloads.pop(name, None)
            self._write_targets()
        if workload is not None:
            self._stop(workload.pods)

    def _stop(self, pods: list[Pod]) -> None:
        import docker.errors

        for pod in pods:
            if pod.exporter is not None:
                pod.exporter.close()
            with contextlib.suppress(docker.errors.DockerException):
                self.client.containers.get(pod.container_id).remove(force=True)

    def status(self, deployment: dict[str, Any]) -> tuple[int, list[Pod]]:
        """Ready replicas (probed now) and the pods of a Deployment."""
        with self.lock:
            workload = self.workloads.get(deployment["metadata"]["name"])
            pods = list(workload.pods) if workload else []
        ready = sum(1 for pod in pods if self._probe(pod))
        return ready, pods

    def _write_targets(self) -> None:
        targets = [p.metrics_address for w in self.workloads.values() for p in w.pods]
        groups = [{"targets": targets}] if targets else []
        fsio.atomic_write(self.targets, json.dumps(groups))

    # -- HTTPRoutes --------------------------------------------------------------------------

    def route(self, store: dict[Any, Any]) -> None:
        """Put every stored HTTPRoute in force on the proxy (whole table, one reload)."""
        table: list[gateway_routes.Route] = []
        with self.lock:
            for (plural, _, _), route in sorted(store.items()):
                if plural != "httproutes":
                    continue
                for rule in route["spec"].get("rules") or []:
                    prefix = rule["matches"][0]["path"]["value"]
                    backends = []
                    for ref in rule.get("backendRefs") or []:
                        workload = self.workloads.get(ref["name"])
                        for pod in workload.pods if workload else []:
                            weight = int(ref.get("weight", 1))
                            backends.append(gateway_routes.Backend(self._url(pod), weight))
                    mirror, percent = None, 0
                    for item in rule.get("filters") or []:
                        if item["type"] == "RequestMirror":
                            target = self.workloads.get(item["requestMirror"]["backendRef"]["name"])
                            if target and target.pods:
                                mirror = self._url(target.pods[0])
                                percent = int(item["requestMirror"].get("percent", 100))
                    table.append(gateway_routes.Route(prefix, backends, mirror, percent))
        self.gateway.configure(table)

    @staticmethod
    def _url(pod: Pod) -> str:
        return f"http://127.0.0.1:{pod.port}"

    def close(self) -> None:
        with self.lock:
            pods = [p for w in self.workloads.values() for p in w.pods]
            self.workloads = {}
        self._stop(pods)
        self.gateway.stop()
        shutil.rmtree(self.root / "config", ignore_errors=True)


def _is_triton(deployment: dict[str, Any]) -> bool:
    """A pod of `kubernetes.engine: triton` (its server container runs tritonserver)."""
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return bool((container.get("command") or [""])[0] == "tritonserver")
