"""`ImageBuilder.ensure`: the lean image of one model version, built, run on loopback,
conformance-tested and pushed; returns `repository@sha256:...` as the registry stores it.

Steps (each reported through `hooks`): find (is an image of these artifact bytes and settings
already in the registry? then nothing else happens) -> base (the pinned base image, pulled by
digest if absent) -> engine (the engine image, built once per base, dependencies and mlops
source) -> build (the model layer) -> run -> conformance -> push (only if it passed) -> the
digest read back from the registry.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import docker
import docker.errors
import semver as semver_lib

import mlops
from mlops import errors
from mlops.providers.images import config as images_config
from mlops.providers.images import container, context, wheels
from mlops.providers.images import errors as image_errors
from mlops.providers.images import hooks as images_hooks
from mlops.providers.images import registry as oci
from mlops.state import models as state

# A running image's base URL -> a conformance result: {"passed": bool, "reason": str, ...}
# (the shape of mlops.conformance.runner.run's result).
Conformance = Callable[[str], Mapping[str, Any]]

LABEL_MODEL = "io.mlops.model"
LABEL_SEMVER = "io.mlops.semver"
LABEL_SHA256 = "io.mlops.artifact.sha256"
LABEL_SETTINGS = "io.mlops.settings.sha256"
LABEL_ENGINE = "io.mlops.engine"
LABEL_MLOPS = "io.mlops.version"
LABEL_COMMIT = "io.mlops.source.commit"
ENGINE_REPOSITORY = "localhost/mlops-engine"
BUILD_TIMEOUT_S = 1800
PROBE_TIMEOUT_S = 60.0
MAX_SETTINGS_BYTES = 1 << 20
PROBE = (
    "import json, os, platform, sys; print(json.dumps([*sys.version_info[:2], "
    "platform.machine(), os.confstr('CS_GNU_LIBC_VERSION') or '']))"
)
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ImageRef:
    repository: str  # host/path/model
    digest: str  # sha256:...

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"

    def __str__(self) -> str:
        return self.reference


def content_tag(sha256: str) -> str:
    """The tag that carries the artifact's sha256: how `find` knows an image without a build."""
    return f"sha256-{sha256}"


def semver_tag(semver: str) -> str:
    return semver.replace("+", "_")  # '+' (build metadata) is not allowed in a tag


class ImageBuilder:
    """Builds through the Docker Engine API (dockerd, or `podman system service`)."""

    def __init__(
        self,
        client: docker.DockerClient,
        config: images_config.ImagesConfig,
        cache_dir: Path,
        *,
        hooks: images_hooks.Hooks | None = None,
        ready_timeout: float = container.READY_TIMEOUT_S,
    ) -> None:
        self.client = client
        self.config = config
        self.cache_dir = cache_dir
        self.hooks = hooks or images_hooks.TerminalHooks()
        self.ready_timeout = ready_timeout

    # -- the pipeline ------------------------------------------------------------------------

    def find(
        self, name: str, sha256: str, settings: Mapping[str, Any] | None = None
    ) -> ImageRef | None:
        """The pushed image of `name` whose labels carry `sha256` (and these settings, if
        given), looked up by its content tag; None if there is none."""
        repository = self.config.image(name)
        path = oci.split(repository)[1]
        with oci.RegistryClient(self.config.registry) as client:
            manifest = client.manifest(path, content_tag(sha256))
            if manifest is None:
                return None
            labels = client.config(path, manifest).get("config", {}).get("Labels") or {}
        if labels.get(LABEL_SHA256) != sha256:
            return None
        if settings is not None and labels.get(LABEL_SETTINGS) != _settings_sha(settings):
            return None
        return ImageRef(repository, manifest.digest)

    def ensure(
        self,
        name: str,
        semver: str,
        artifact_path: Path,
        settings: Mapping[str, Any],
        sha256: str,
        *,
        conformance: Conformance,
        source_commit: str | None = None,
    ) -> ImageRef:
        """The image of `name@semver` in the registry: found by content, or built, tested and
        pushed. Raises one ImageBuildError / ImageRunError / ImageConformanceError /
        Registry*Error with the relevant log tail; nothing is pushed unless the test passed."""
        _check_inputs(name, semver, artifact_path, settings, sha256)
        with self._step("find", f"{self.config.image(name)}:{content_tag(sha256)[:19]}..."):
            found = self.find(name, sha256, settings)
        if found is not None:
            self.hooks.line("find", f"already built and pushed: {found}")
            return found
        image_id = self.build_tested(
            name, semver, artifact_path, settings, sha256,
            conformance=conformance, source_commit=source_commit,
        )  # fmt: skip
        try:
            return self.push(name, semver, sha256, image_id)
        except BaseException:
            self._discard(image_id)
            raise

    def build_tested(
        self,
        name: str,
        semver: str,
        artifact_path: Path,
        settings: Mapping[str, Any],
        sha256: str,
        *,
        conformance: Conformance,
        source_commit: str | None = None,
    ) -> str:
        """Build the model image, run it on loopback and run `conformance` against it; the
        image id of a tested image, kept in the local store (tagged REPOSITORY:SEMVER and the
        content tag) for `push`. An image that fails is removed and nothing is pushed."""
        _check_inputs(name, semver, artifact_path, settings, sha256)
        image_id = self.build(name, semver, artifact_path, settings, sha256, source_commit)
        try:
            self.hooks.started("run", f"{name}@{semver} on loopback")
            started = time.monotonic()
            with container.running(self.client, image_id, timeout=self.ready_timeout) as ready:
                self.hooks.finished("run", time.monotonic() - started, f"ready at {ready.url}")
                with self._step("conformance", ready.url):
                    result = dict(conformance(ready.url))
            if not result.get("passed"):
                raise image_errors.ImageConformanceError(
                    f"{name}@{semver}: the running image failed conformance: "
                    f"{result.get('reason') or 'no reason given'}; nothing was pushed",
                    result,
                )
        except BaseException:
            self._discard(image_id)
            raise
        return image_id

    def local(self, name: str, sha256: str, settings: Mapping[str, Any]) -> str | None:
        """The id of the local model image of these bytes and settings (built by
        `build_tested`, not yet removed), or None."""
        if not _SHA256.match(sha256):
            raise errors.UsageError(f"artifact sha256 {sha256!r} is not 64 lower-case hex digits")
        try:
            image = self.client.images.get(f"{self.config.image(name)}:{content_tag(sha256)}")
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.DockerException as exc:
            raise image_errors.ImageBuildError(
                f"cannot read the local image store: {_one_line(str(exc))}"
            ) from exc
        labels = image.labels or {}
        if labels.get(LABEL_SHA256) != sha256 or labels.get(LABEL_SETTINGS) != _settings_sha(
            settings
        ):
            return None
        return str(image.id)

    def discard(self, image_id: str) -> None:
        """Remove a local model image (after it was pushed, or when it will not be)."""
        self._discard(image_id)

    def build(
        self,
        name: str,
        semver: str,
        artifact_path: Path,
        settings: Mapping[str, Any],
        sha256: str,
        source_commit: str | None = None,
    ) -> str:
        """Build the model image locally (the engine image first if needed); its image id."""
        engine_id, engine_labels = self.engine_image()
        repository = self.config.image(name)
        labels = {
            **engine_labels,
            "org.opencontainers.image.title": name,
            "org.opencontainers.image.version": semver,
            "org.opencontainers.image.description": f"mlops engine serving {name} {semver}",
            LABEL_MODEL: name,
            LABEL_SEMVER: semver,
            LABEL_SHA256: sha256,
            LABEL_SETTINGS: _settings_sha(settings),
        }
        if source_commit:
            labels["org.opencontainers.image.revision"] = source_commit
            labels[LABEL_COMMIT] = source_commit
        files: dict[str, Path | bytes] = {
            "Dockerfile": context.model_dockerfile(engine_id, name, semver).encode(),
            "model/model.onnx": artifact_path,
            "model/settings.json": context.settings_bytes(settings),
        }
        tag = f"{repository}:{semver_tag(semver)}"
        with self._step("build", f"{tag} from the engine image {engine_id[:19]}"):
            image_id = self._build(context.pack(files), tag, labels)
            self.client.images.get(image_id).tag(repository, content_tag(sha256))
            added = len(self._layers(image_id)) - len(self._layers(engine_id))
            self.hooks.line("build", f"{added} new layer(s) on top of the engine image")
        return image_id

    def engine_image(self) -> tuple[str, dict[str, str]]:
        """The engine image for the configured base (built if this store lacks it): its id and
        the labels every model image inherits."""
        base_id = self._base()
        target = self._probe(base_id)
        deps = wheels.wheelhouse(self.cache_dir, target, wheels.pins())
        pip = wheels.pip_wheel(self.cache_dir, target)
        engine = wheels.engine_wheel(self.cache_dir)
        dockerfile = context.engine_dockerfile(
            self.config.base, [w.name for w in deps], pip.name, engine.name
        )
        key = hashlib.sha256(
            "\n".join(
                [
                    base_id,
                    dockerfile,
                    *(w.name for w in deps),
                    wheels.source_digest(wheels.source_root()),
                ]
            ).encode()
        ).hexdigest()
        labels = {
            "org.opencontainers.image.vendor": "mlops",
            "org.opencontainers.image.base.name": self.config.base.split("@")[0],
            "org.opencontainers.image.base.digest": self.config.base.split("@")[1],
            LABEL_MLOPS: mlops.__version__,
            LABEL_ENGINE: key,
        }
        tag = f"{ENGINE_REPOSITORY}:{key[:32]}"
        try:
            return str(self.client.images.get(tag).id), labels
        except docker.errors.ImageNotFound:
            pass
        files: dict[str, Path | bytes] = {"Dockerfile": dockerfile.encode()}
        for wheel in [*deps, pip, engine]:
            files[f"wheels/{wheel.name}"] = wheel
        with self._step("engine", f"{tag} ({len(deps)} wheels for {target.tag})"):
            return self._build(context.pack(files), tag, labels), labels

    def push(self, name: str, semver: str, sha256: str, image_id: str) -> ImageRef:
        """Push both tags (the content tag last: it marks a complete image for `find`) and read
        the manifest digest back from the registry."""
        repository = self.config.image(name)
        auth = oci.credentials(self.config.registry)
        tags = [semver_tag(semver), content_tag(sha256)]
        with self._step("push", f"{repository} ({', '.join(t[:19] for t in tags)})"):
            for tag in tags:
                self._push(repository, tag, auth)
            path = oci.split(repository)[1]
            with oci.RegistryClient(self.config.registry) as client:
                pushed = [client.manifest(path, tag) for tag in tags]
            digests = {m.digest for m in pushed if m is not None}
            if len(digests) != 1 or None in pushed:
                raise image_errors.RegistryRefusedError(
                    f"{repository}: the registry does not hold the pushed tags {tags} as one "
                    f"manifest (read back: {sorted(digests) or 'nothing'})"
                )
            ref = ImageRef(repository, digests.pop())
            self.hooks.line("push", f"registry digest {ref}")
        return ref

    # -- engine API calls --------------------------------------------------------------------

    def _base(self) -> str:
        base = self.config.base
        with self._step("base", base):
            try:
                return str(self.client.images.get(base).id)
            except docker.errors.ImageNotFound:
                pass
            try:
                return str(self.client.images.pull(base).id)
            except docker.errors.DockerException as exc:
                raise image_errors.ImageBuildError(
                    f"cannot pull the base image {base}: {_one_line(str(exc))}"
                ) from exc

    def _probe(self, base_id: str) -> wheels.Target:
        """Python version, machine and glibc of the base, asked once per base image."""
        cached = self.cache_dir / "probe" / f"{base_id.removeprefix('sha256:')}.json"
        raw = cached.read_text() if cached.is_file() else self._run_probe(base_id)
        try:
            major, minor, machine, libc = json.loads(raw)
            glibc = re.fullmatch(r"glibc (\d+)\.(\d+)", libc)
            if glibc is None:
                raise ValueError(libc or "no glibc")
        except ValueError as exc:
            raise image_errors.ImageBuildError(
                f"the base image {self.config.base} needs a glibc python3 ({exc})"
            ) from exc
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(raw)
        return wheels.Target(int(major), int(minor), str(machine), (int(glibc[1]), int(glibc[2])))

    def _run_probe(self, base_id: str) -> str:
        """The probe's output. Created, started and waited for by polling, then removed: with
        `run(remove=True)` podman sometimes reports exit status -1 for a container that ran
        fine (it was removed before the wait read its status); the output decides."""
        try:
            probe = self.client.containers.create(
                base_id,
                entrypoint=["python3", "-c", PROBE],
                command=[],
                network_mode="host",
                ulimits=container.ulimits(),
            )
        except docker.errors.DockerException as exc:
            raise image_errors.ImageBuildError(
                f"the base image {self.config.base} cannot run python3: {_one_line(str(exc))}"
            ) from exc
        try:
            probe.start()
            deadline = time.monotonic() + PROBE_TIMEOUT_S
            while time.monotonic() < deadline:
                probe.reload()
                if probe.status in ("exited", "dead", "stopped"):
                    break
                time.sleep(0.1)
            out = probe.logs(stdout=True, stderr=False)
            return out.decode(errors="replace").strip() if isinstance(out, bytes) else str(out)
        except docker.errors.DockerException as exc:
            raise image_errors.ImageBuildError(
                f"the base image {self.config.base} cannot run python3: {_one_line(str(exc))}"
            ) from exc
        finally:
            with suppress(docker.errors.DockerException):
                probe.remove(force=True)

    def _build(self, tar: IO[bytes], tag: str, labels: Mapping[str, str]) -> str:
        lines: list[str] = []
        image_id = ""
        step = "engine" if tag.startswith(ENGINE_REPOSITORY) else "build"
        try:
            for chunk in _build_stream(self.client.api, tar, tag, labels):
                if "error" in chunk:
                    lines.append(str(chunk["error"]).strip())
                    raise image_errors.ImageBuildError(
                        f"building {tag} failed:\n" + "\n".join(lines[-20:])
                    )
                aux = chunk.get("aux") or {}
                if isinstance(aux, dict) and aux.get("ID"):
                    image_id = str(aux["ID"])
                for text in str(chunk.get("stream") or "").splitlines():
                    if text.strip():
                        lines.append(text)
                        self.hooks.line(step, text)
        except docker.errors.DockerException as exc:
            raise image_errors.ImageBuildError(
                f"building {tag} failed: {_one_line(str(exc))}\n" + "\n".join(lines[-20:])
            ) from exc
        finally:
            tar.close()
        try:
            return str(self.client.images.get(image_id or tag).id)
        except docker.errors.ImageNotFound as exc:
            raise image_errors.ImageBuildError(
                f"building {tag} ended without an image:\n" + "\n".join(lines[-20:])
            ) from exc

    def _push(self, repository: str, tag: str, auth: dict[str, str] | None) -> None:
        secret = (auth or {}).get("password") or ""
        try:
            for chunk in self.client.api.push(
                repository, tag=tag, stream=True, decode=True, auth_config=auth
            ):
                if chunk.get("error"):
                    message = _redact(str(chunk["error"]).strip(), secret)
                    raise _push_error(f"pushing {repository}:{tag} failed: {message}")
                status = str(chunk.get("status") or chunk.get("stream") or "").strip()
                if status:
                    self.hooks.line("push", _redact(status, secret))
        except docker.errors.DockerException as exc:
            message = _redact(_one_line(str(exc)), secret)
            raise _push_error(f"pushing {repository}:{tag} failed: {message}") from exc

    def _layers(self, image_id: str) -> list[str]:
        attrs = self.client.images.get(image_id).attrs
        return list(attrs.get("RootFS", {}).get("Layers") or [])

    def _discard(self, image_id: str) -> None:
        """A model image that will not be pushed is not kept (its engine image is)."""
        with suppress(docker.errors.DockerException):
            self.client.images.remove(image_id, force=True)

    @contextmanager
    def _step(self, step: str, detail: str) -> Iterator[None]:
        self.hooks.started(step, detail)
        started = time.monotonic()
        yield
        self.hooks.finished(step, time.monotonic() - started, detail)


def _build_stream(
    api: Any, tar: IO[bytes], tag: str, labels: Mapping[str, str]
) -> Iterator[dict[str, Any]]:
    """POST /build as docker-py's `build()` does, plus podman's `layers=false`: podman would
    otherwise commit every instruction as an image, each a full copy of the root filesystem
    on the vfs driver (about 10 s per LABEL here); a stage then commits once. dockerd ignores
    the parameter. The public `build()` cannot pass it, hence docker-py's request helpers."""
    params = {
        "t": tag, "rm": True, "pull": False, "layers": False, "labels": json.dumps(dict(labels)),
    }  # fmt: skip
    headers = {"Content-Type": "application/x-tar"}
    api._set_auth_headers(headers)
    response = api._post(
        api._url("/build"), data=tar, params=params, headers=headers, stream=True,
        timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip
    api._raise_for_status(response)
    yield from api._stream_helper(response, decode=True)


def _check_inputs(
    name: str, semver: str, artifact: Path, settings: Mapping[str, Any], sha256: str
) -> None:
    """Refuse bad input before anything is built (one line each)."""
    if not _NAME.match(name):
        raise errors.UsageError(f"model name {name!r} is not a DNS label")
    try:
        semver_lib.Version.parse(semver)
    except ValueError as exc:
        raise errors.UsageError(f"{semver!r} is not a semantic version") from exc
    if not _SHA256.match(sha256):
        raise errors.UsageError(f"artifact sha256 {sha256!r} is not 64 lower-case hex digits")
    if not artifact.is_file():
        raise errors.ArtifactError(f"artifact {artifact} is not a file")
    if len(context.settings_bytes(settings)) > MAX_SETTINGS_BYTES:
        raise errors.UsageError(f"settings of {name}@{semver} are over 1 MiB")
    digest = hashlib.sha256()
    with artifact.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise errors.ArtifactError(
            f"artifact {artifact} has sha256 {digest.hexdigest()}, not the recorded {sha256}"
        )


def _settings_sha(settings: Mapping[str, Any]) -> str:
    return state.settings_digest(settings)  # what the planner compares (state.ImagesState)


def _one_line(text: str, limit: int = 400) -> str:
    return " ".join(text.split())[:limit]


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


def _push_error(message: str) -> errors.MlopsError:
    unreachable = ("connection refused", "no such host", "i/o timeout", "connection reset")
    if any(word in message.lower() for word in unreachable):
        return image_errors.RegistryUnavailableError(message)
    return image_errors.RegistryRefusedError(message)
