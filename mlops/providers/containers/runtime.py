"""The local target with `serve.runtime: container`: every model version runs as its own built
image (docs/containers.md), behind a gateway that splits and mirrors traffic (nginx, see
mlops.providers.gateway), so the canary that is gated locally is the image that ships.

- `load` runs the version's image, found in the OCI registry by the content tag carrying the
  artifact's sha256 and its settings (the `build_image` / `push_image` steps made it), by
  digest: `replicas` containers, each one engine worker with host networking on loopback
  ports, the ulimits and runc settings of mlops.providers.images. Ready means the engine's
  /v2/health/ready answers and its index has the version READY.
- The gateway listens on `serve.host:serve.port` (the same front door as the process runtime).
  `/v2/models/NAME/...` is split between the versions' containers by the model's weights and
  mirrored to the shadow version's; `/v2/models/NAME/versions/V/...` reaches version V's
  containers only (the conformance test uses it); `/v2/health/...` any container.
- A container is stopped only after a gateway reload that no longer routes to it has finished
  (the old nginx workers have exited), so no request in flight is lost.
- `.mlops/containers/desired.json` (desired.py) holds the routing tables and the containers
  started per version; the containers themselves carry labels (workspace, model, semver,
  artifact sha256, image, ports), which is what `refresh` reads, so a container started by a
  run that crashed before recording it is found and adopted by the next `load`.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from mlops import errors
from mlops.providers import gateway as gateway_mod
from mlops.providers.containers import desired as desired_mod
from mlops.providers.engine import client as engine_client
from mlops.providers.engine import view as runtime_view
from mlops.providers.gateway import routes as gateway_routes
from mlops.state import models as state
from mlops.workspace import Workspace

if TYPE_CHECKING:
    import docker

    from mlops.providers import images

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10  # SIGTERM, then SIGKILL: the container has nothing in flight by then
START_ATTEMPTS = 3  # a probed port taken before the engine bound it: start again
ROLE = "serve"
L_ROLE, L_WORKSPACE = "io.mlops.role", "io.mlops.workspace"
L_MODEL, L_SEMVER, L_SHA256 = "io.mlops.model", "io.mlops.semver", "io.mlops.artifact.sha256"
L_IMAGE, L_PORT, L_ADMIN = "io.mlops.image", "io.mlops.port", "io.mlops.admin-port"
EXITED = "exited"  # a container that no longer runs (refresh's own state, never reported)
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")


class ContainerRuntime:
    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.root = workspace.state_dir / "containers"
        self.desired_file = self.root / "desired.json"
        self.gateway = gateway_mod.Gateway(self.root / "gateway")
        self.key = hashlib.sha256(str(workspace.root.resolve()).encode()).hexdigest()[:16]
        self.request_rates: dict[str, float] = {}
        self._replicas = 1  # per version, as the last ensure_running said
        self._client: docker.DockerClient | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def reachable(self) -> bool:
        return self.gateway.running()

    def ensure_running(self, replicas: int) -> None:
        """Start the gateway if it is not running and route by the desired state; `replicas`
        is the container count of the versions loaded next (each model has its own)."""
        self._replicas = max(1, min(int(replicas), desired_mod.MAX_REPLICAS))
        if not self.gateway.running():
            serve = self.workspace.config.serve
            host = "127.0.0.1" if serve.host == "localhost" else serve.host
            self.root.mkdir(parents=True, exist_ok=True)
            self.gateway.start(host=host, port=serve.port)
            self._route(self._desired())

    def engine(self) -> state.EngineState | None:
        return None  # no shared engine: each version runs containers of its own

    def scale(self, replicas: int) -> None:
        """Not planned for this runtime (no shared engine); sets the count of later loads."""
        self._replicas = max(1, min(int(replicas), desired_mod.MAX_REPLICAS))

    def stop(self) -> bool:
        """Stop the gateway and remove this workspace's containers; the routing tables stay
        (a later apply loads the versions again). True when anything was running."""
        stopped = self.gateway.stop()
        ids = [c.id for c in self._containers()]
        self._remove(ids)
        current = self._desired()
        emptied = {
            name: model.model_copy(
                update={
                    "versions": {
                        v: entry.model_copy(update={"containers": []})
                        for v, entry in model.versions.items()
                    }
                }
            )
            for name, model in current.models.items()
        }
        desired_mod.write(self.desired_file, current.model_copy(update={"models": emptied}))
        if self._client is not None:
            self._client.close()
            self._client = None
        return stopped or bool(ids)

    def inference_url(self) -> str:
        return self.gateway.url

    def worker_admin_urls(self) -> list[str]:
        """The admin address of every container this runtime started and recorded."""
        return [
            c.admin_url
            for model in self._desired().models.values()
            for version in model.versions.values()
            for c in version.containers
        ]

    def served_artifact(self, name: str, semver: str) -> Path | None:
        return None  # the image pins the bytes (its labels carry the artifact's sha256)

    # -- reads -------------------------------------------------------------------------------

    def refresh(self, names: Sequence[str] | None = None) -> dict[str, state.RuntimeModel]:
        """What runs, from the containers' labels and each one's index; the routing tables
        from the desired state (what the gateway was configured with)."""
        wanted = set(names) if names is not None else None
        current = self._desired()
        per_version: dict[tuple[str, str], list[str]] = {}  # -> container states
        digests: dict[tuple[str, str], set[str]] = {}
        rates: dict[str, float] = {}
        for found in self._containers():
            labels = found.labels or {}
            name, semver = labels.get(L_MODEL, ""), labels.get(L_SEMVER, "")
            if not name or not semver or (wanted is not None and name not in wanted):
                continue
            per_version.setdefault((name, semver), []).append(
                self._state_of(found, name, semver, rates)
            )
            if labels.get(L_SHA256):
                digests.setdefault((name, semver), set()).add(labels[L_SHA256])
        self.request_rates = rates
        models: dict[str, state.RuntimeModel] = {}
        every = {n for n, _ in per_version} | {
            n for n in current.models if wanted is None or n in wanted
        }
        for name in sorted(every):
            model = current.models.get(name, desired_mod.Model())
            # A version whose every container has exited is not loaded: the next plan loads
            # it again (load replaces exited containers).
            loaded = {
                v: _merge(states)
                for (n, v), states in sorted(per_version.items())
                if n == name and any(s != EXITED for s in states)
            }
            if not loaded and not model.weights:
                continue
            top = max(model.weights, key=lambda v: model.weights[v], default=None)
            entry = model.versions.get(top) if top else None
            alive = per_version.get((name, top or ""), [])
            models[name] = state.RuntimeModel(
                name=name,
                loaded=loaded,
                weights={v: w for v, w in model.weights.items() if w > 0},
                shadow=(
                    state.ShadowRoute(version=model.shadow.version, percent=model.shadow.percent)
                    if model.shadow
                    else None
                ),
                generation=model.generation,
                replicas=entry.replicas if entry else 0,
                replicas_alive=sum(1 for s in alive if s == runtime_view.READY),
                config={v: dict(model.versions[v].settings) for v in loaded if v in model.versions},
                served_sha256={
                    v: sorted(digests.get((name, v), set())) for v in loaded if (name, v) in digests
                },
            )
        return models

    # -- changes -----------------------------------------------------------------------------

    def load(self, name: str, semver: str, artifact: Path, settings: Mapping[str, Any]) -> None:
        """Run `replicas` containers of the version's image (no traffic), ready, routed by
        version only; containers of another image of the same version (new settings) are
        replaced once the new ones are ready."""
        with artifact.open("rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        reference = self._image(name, semver, sha256, settings)
        replicas = self._replicas
        keep: list[desired_mod.Container] = []
        retire: list[str] = []
        for found in self._containers():
            labels = found.labels or {}
            if labels.get(L_MODEL) != name or labels.get(L_SEMVER) != semver:
                continue
            adopted = _recorded(found)
            usable = (
                labels.get(L_IMAGE) == reference
                and adopted is not None
                and found.status == "running"
                and len(keep) < replicas
            )
            if usable and adopted is not None:
                keep.append(adopted)
            else:
                retire.append(str(found.id))
        for container in keep:
            self._wait_ready(container, name, semver, time.monotonic() + READY_TIMEOUT_S)
        while len(keep) < replicas:
            keep.append(self._start(name, semver, sha256, reference))
        current = self._desired()
        model = current.models.get(name, desired_mod.Model())
        entry = desired_mod.Version(
            image=reference,
            sha256=sha256,
            settings=dict(settings),
            replicas=replicas,
            containers=keep,
        )
        model = model.model_copy(update={"versions": {**model.versions, semver: entry}})
        current = current.model_copy(update={"models": {**current.models, name: model}})
        desired_mod.write(self.desired_file, current)
        self._route(current)  # the retired ones get nothing more once this returns
        self._remove(retire)

    def unload(self, name: str, semver: str) -> None:
        """Leave the desired state, route around the version, then remove its containers.
        Idempotent. Refused while the version still has weight or is the shadow."""
        current = self._desired()
        model = current.models.get(name)
        if model is not None:
            shadow = model.shadow.version if model.shadow else None
            if model.weights.get(semver, 0) > 0 or shadow == semver:
                raise errors.PermanentError(
                    f"{name}@{semver} still receives traffic ({model.weights}); not unloading it"
                )
            if semver in model.versions:
                versions = {v: e for v, e in model.versions.items() if v != semver}
                model = model.model_copy(update={"versions": versions})
                current = current.model_copy(update={"models": {**current.models, name: model}})
                desired_mod.write(self.desired_file, current)
        self._route(current)
        self._remove(
            [
                str(found.id)
                for found in self._containers()
                if (found.labels or {}).get(L_MODEL) == name
                and (found.labels or {}).get(L_SEMVER) == semver
            ]
        )

    def set_traffic(
        self,
        name: str,
        weights: Mapping[str, int],
        shadow: state.ShadowRoute | None,
        *,
        rollback: bool = False,
    ) -> int:
        """Put the table in force on the gateway; the model's new generation, once a reload
        that routes by it has finished. A `rollback` table is recorded before the gateway is
        touched, so whatever happens next no restart routes to the version it takes out."""
        table = {str(v): int(w) for v, w in weights.items()}
        if any(not 0 <= w <= 10_000 for w in table.values()):
            raise errors.PermanentError(f"{name}: weights must be in [0, 10000]: {table}")
        current = self._desired()
        model = current.models.get(name, desired_mod.Model())
        want_shadow = (
            desired_mod.Shadow(version=shadow.version, percent=shadow.percent) if shadow else None
        )
        if not rollback:
            missing = [
                v
                for v in [
                    *(v for v, w in table.items() if w > 0),
                    *([shadow.version] if shadow else []),
                ]
                if not (model.versions.get(v) and model.versions[v].containers)
            ]
            if missing:
                raise errors.PermanentError(
                    f"{name}: versions {', '.join(sorted(missing))} are not loaded here"
                )
        same = model.weights == table and model.shadow == want_shadow
        if same and self.gateway.running() and model.generation > 0:
            self._route(current)  # a no-op reload when the gateway already routes by it
            return model.generation
        model = model.model_copy(
            update={"weights": table, "shadow": want_shadow, "generation": model.generation + 1}
        )
        current = current.model_copy(update={"models": {**current.models, name: model}})
        if rollback:
            desired_mod.write(self.desired_file, current)
            if not self.gateway.running():
                return model.generation
        self._route(current)
        desired_mod.write(self.desired_file, current)
        return model.generation

    # -- internals ---------------------------------------------------------------------------

    def _desired(self) -> desired_mod.Desired:
        return desired_mod.read(self.desired_file)

    def _route(self, current: desired_mod.Desired) -> None:
        """The gateway's table for `current` (nothing when the gateway is not running)."""
        if self.gateway.running():
            self.gateway.configure(routes(current))

    def _docker(self) -> docker.DockerClient:
        if self._client is None:
            from mlops.providers import images

            self._client = images.connect()
        return self._client

    def _builder(self) -> images.ImageBuilder:
        from mlops.providers import images

        config = self.workspace.config.images
        if config is None:
            raise errors.ConfigError("serve.runtime: container needs images: in mlops.yaml")
        return images.ImageBuilder(
            self._docker(),
            images.ImagesConfig(config.base, config.repository),
            images.default_cache_dir(),
            hooks=images.Hooks(),
        )

    def _image(self, name: str, semver: str, sha256: str, settings: Mapping[str, Any]) -> str:
        found = self._builder().find(name, sha256, settings)
        if found is None:
            config = self.workspace.config.images
            repository = f"{config.repository}/{name}" if config else name
            raise errors.PermanentError(
                f"{name}@{semver}: {repository} has no image of these artifact bytes and "
                "settings; the build_image and push_image steps must run first "
                "(plan again: with images: in mlops.yaml the plan includes them)"
            )
        return found.reference

    def _containers(self) -> list[Any]:
        import docker.errors

        filters = {"label": [f"{L_ROLE}={ROLE}", f"{L_WORKSPACE}={self.key}"]}
        try:
            return list(self._docker().containers.list(all=True, filters=filters))
        except docker.errors.DockerException as exc:
            raise errors.TransientError(
                f"cannot list containers: {' '.join(str(exc).split())[:300]}"
            ) from exc

    def _state_of(self, found: Any, name: str, semver: str, rates: dict[str, float]) -> str:
        if found.status != "running":
            return EXITED
        recorded = _recorded(found)
        if recorded is None:
            return runtime_view.FAILED
        try:
            with engine_client.AdminClient(recorded.admin_url, timeout=5.0) as admin:
                index = admin.index()
                for model, rate in runtime_view.rates(admin.metrics_text()).items():
                    rates[model] = rates.get(model, 0.0) + rate
        except (engine_client.EngineUnavailable, engine_client.EngineRejected):
            return runtime_view.LOADING
        view = runtime_view.WorkerView({"models": {}}, index)
        return view.versions(name).get(semver, runtime_view.LOADING)

    def _start(self, name: str, semver: str, sha256: str, reference: str) -> desired_mod.Container:
        import docker.errors

        from mlops.providers.images import container as image_container

        client = self._docker()
        self._pull(reference)
        last = ""
        for _ in range(START_ATTEMPTS):
            port, admin = image_container.free_port(), image_container.free_port()
            command = [
                "--repository", "/models", "--host", "127.0.0.1", "--port", str(port),
                "--admin-port", str(admin), "--load-all", "--state-dir", "/tmp/mlops-engine",
            ]  # fmt: skip
            labels = {
                L_ROLE: ROLE, L_WORKSPACE: self.key, L_MODEL: name, L_SEMVER: semver,
                L_SHA256: sha256, L_IMAGE: reference, L_PORT: str(port), L_ADMIN: str(admin),
            }  # fmt: skip
            try:
                started = client.containers.run(
                    reference,
                    command=command,
                    detach=True,
                    name=f"mlops-{self.key[:8]}-{_NAME_UNSAFE.sub('_', f'{name}-{semver}')}"
                    f"-{secrets.token_hex(3)}",
                    network_mode="host",
                    ulimits=image_container.ulimits(),
                    healthcheck={"test": ["NONE"]},  # readiness is polled (no timer service)
                    labels=labels,
                )
            except docker.errors.DockerException as exc:
                raise errors.PermanentError(
                    f"{name}@{semver}: could not start {reference}: "
                    f"{' '.join(str(exc).split())[:300]}"
                ) from exc
            recorded = desired_mod.Container(id=str(started.id), port=port, admin_port=admin)
            try:
                self._wait_ready(recorded, name, semver, time.monotonic() + READY_TIMEOUT_S)
                return recorded
            except errors.TransientError as exc:
                last = exc.message
                self._remove([recorded.id])
                if "exited" not in last:
                    break
        raise errors.TransientError(last)

    def _pull(self, reference: str) -> None:
        import docker.errors

        client = self._docker()
        try:
            client.images.get(reference)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as exc:
            raise errors.TransientError(f"cannot read the image store: {exc}") from exc
        try:
            client.images.pull(reference)
        except docker.errors.DockerException as exc:
            raise errors.TransientError(
                f"cannot pull {reference}: {' '.join(str(exc).split())[:300]}"
            ) from exc

    def _wait_ready(
        self, recorded: desired_mod.Container, name: str, semver: str, deadline: float
    ) -> None:
        import docker.errors

        from mlops.providers.images import container as image_container

        found = None
        with suppress(docker.errors.DockerException):
            found = self._docker().containers.get(recorded.id)
        why = "not ready"
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                try:
                    if http.get(f"{recorded.url}/v2/health/ready").status_code == 200:
                        with engine_client.AdminClient(recorded.admin_url, timeout=5.0) as admin:
                            rows = admin.index()
                        view = runtime_view.WorkerView({"models": {}}, rows)
                        got = view.versions(name).get(semver)
                        if got == runtime_view.READY:
                            return
                        why = f"the engine reports {name}@{semver} {got or 'absent'}"
                except (httpx.HTTPError, errors.MlopsError) as exc:
                    why = type(exc).__name__
                if found is not None:
                    with suppress(docker.errors.DockerException):
                        found.reload()
                        if found.status in ("exited", "dead", "stopped"):
                            raise errors.TransientError(
                                f"{name}@{semver}: the container exited before it was ready:\n"
                                f"{image_container.log_tail(found)}"
                            )
                time.sleep(0.2)
        tail = image_container.log_tail(found) if found is not None else "(no log)"
        raise errors.TransientError(
            f"{name}@{semver}: the container was not ready in time ({why}):\n{tail}"
        )

    def _remove(self, ids: Sequence[str]) -> None:
        import docker.errors

        for container_id in ids:
            try:
                found = self._docker().containers.get(container_id)
            except docker.errors.NotFound:
                continue
            except docker.errors.DockerException as exc:
                raise errors.TransientError(
                    f"cannot stop container {container_id[:12]}: {exc}"
                ) from exc
            with suppress(docker.errors.DockerException):
                found.stop(timeout=STOP_TIMEOUT_S)
            with suppress(docker.errors.NotFound):
                found.remove(force=True)


def routes(current: desired_mod.Desired) -> list[gateway_mod.Route]:
    """The gateway's table for the desired state (pure)."""
    table: list[gateway_mod.Route] = []
    everyone: list[str] = []
    for name, model in sorted(current.models.items()):
        urls = {v: [c.url for c in e.containers] for v, e in model.versions.items()}
        weights = {v: w for v, w in model.weights.items() if w > 0 and urls.get(v)}
        if not model.weights and urls:
            # No table yet: the newest version takes all traffic, as the engine routes.
            newest = max((v for v in urls if urls[v]), key=runtime_view.semver_key, default=None)
            weights = {newest: 1} if newest else {}
        lcm = reduce(math.lcm, (len(urls[v]) for v in weights), 1)
        backends = [
            gateway_mod.Backend(url, w * lcm // len(urls[v]))
            for v, w in sorted(weights.items())
            for url in urls[v]
        ]
        divisor = reduce(math.gcd, (b.weight for b in backends), 0) or 1
        backends = [gateway_mod.Backend(b.url, b.weight // divisor) for b in backends]
        mirror = None
        percent = 0
        if model.shadow is not None and urls.get(model.shadow.version):
            mirror = urls[model.shadow.version][0]
            percent = model.shadow.percent
        if backends or mirror:
            table.append(gateway_mod.Route(f"/v2/models/{name}", backends, mirror, percent))
        for version, version_urls in sorted(urls.items()):
            if version_urls:
                table.append(
                    gateway_mod.Route(
                        f"/v2/models/{name}/versions/{version}",
                        [gateway_mod.Backend(u, 1) for u in version_urls],
                    )
                )
                everyone.extend(version_urls)
    if everyone:
        unique = list(dict.fromkeys(everyone))[: gateway_routes.MAX_BACKENDS]
        health = [gateway_mod.Backend(u, 1) for u in unique]
        table.append(gateway_mod.Route("/v2/health", health))
    return table


def _recorded(found: Any) -> desired_mod.Container | None:
    labels = found.labels or {}
    try:
        return desired_mod.Container(
            id=str(found.id), port=int(labels[L_PORT]), admin_port=int(labels[L_ADMIN])
        )
    except (KeyError, ValueError):
        return None


def _merge(states: Sequence[str]) -> str:
    states = [runtime_view.FAILED if s == EXITED else s for s in states]
    if all(s == runtime_view.READY for s in states):
        return runtime_view.READY
    if runtime_view.FAILED in states:
        return runtime_view.FAILED
    if runtime_view.LOADING in states:
        return runtime_view.LOADING
    return runtime_view.PARTIAL
