"""The image steps of apply (docs/images.md): `build_image` builds the version's image, runs
it on loopback and runs the same conformance test as the local target against the running
container; `push_image` pushes the tested image, reads the manifest digest back from the OCI
registry and records it on the registry version. Both look in the OCI registry first, so a
re-run (or an image pushed since the plan) is a no-op.

Step starts and ends go to the apply listeners (terminal and journal); the build's and the
push's own output streams to the terminal only (stderr), so the journal stays small and never
holds a registry's answer verbatim. Credentials are read by the image provider from the Docker
config or the environment and never reach a message.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from mlops import errors
from mlops.apply import hooks as hooks_
from mlops.apply import target as target_
from mlops.plan import types as t
from mlops.providers import images
from mlops.state import models as state

GIT_TIMEOUT_S = 5.0
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class Progress(images.Hooks):
    """Image steps as apply messages (journaled); build and push lines to the terminal."""

    def __init__(self, hooks: hooks_.Hook, label: str, stream: TextIO | None = None) -> None:
        self.hooks = hooks
        self.label = label
        self.terminal = images.TerminalHooks(stream or sys.stderr)

    def started(self, step: str, detail: str) -> None:
        self.hooks.on_message(f"{self.label}: image {step}: {detail}")

    def finished(self, step: str, seconds: float, detail: str) -> None:
        self.hooks.on_message(f"{self.label}: image {step} done in {seconds:.1f}s")

    def line(self, step: str, text: str) -> None:
        self.terminal.line(step, text)


def build_image(
    target: target_.Target, model: str, after: t.BuildImagePayload, hooks: hooks_.Hook
) -> None:
    """Build, run on loopback, conformance test; the tested image stays local for push."""
    version, sha256 = _version(target, model, after.semver, after.sha256)
    with _builder(model, after, hooks) as builder:
        _build(target, model, after, builder, version, sha256, hooks)


def _build(
    target: target_.Target,
    model: str,
    after: t.BuildImagePayload,
    builder: images.ImageBuilder,
    version: state.RegistryVersion,
    sha256: str,
    hooks: hooks_.Hook,
) -> None:
    settings = after.settings.engine_json()
    found = builder.find(model, sha256, settings)
    if found is not None:
        hooks.on_message(f"{model}@{after.semver}: the registry already holds {found}")
        return
    from mlops import conformance

    ws = target.ws
    validation = (
        ws.inside(Path(after.test.validation), what="validation data")
        if after.test.validation
        else None
    )
    test = after.test.model_dump(mode="json")

    def check(url: str) -> Mapping[str, Any]:
        return conformance.run(target, model, after.semver, test, validation=validation, url=url)

    builder.build_tested(
        model,
        after.semver,
        target.registry.artifact_path(model, version.semver),
        settings,
        sha256,
        conformance=check,
        source_commit=source_commit(ws.root),
    )


def source_commit(root: Path) -> str | None:
    """The workspace's git commit, for the image's source label; None outside a repository."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and _COMMIT.fullmatch(commit) else None


def push_image(
    target: target_.Target, model: str, after: t.PushImagePayload, hooks: hooks_.Hook
) -> None:
    """Push the image `build_image` tested, read its digest back, record it on the version."""
    version, sha256 = _version(target, model, after.semver, after.sha256)
    settings = after.settings.engine_json()
    with _builder(model, after, hooks) as builder:
        ref = builder.find(model, sha256, settings)
        if ref is None:
            image_id = builder.local(model, sha256, settings)
            if image_id is None:
                raise errors.PermanentError(
                    f"{model}@{after.semver}: no tested image of these bytes and settings in "
                    "the local image store (build_image did not leave one): plan again"
                )
            ref = builder.push(model, after.semver, sha256, image_id)
    if version.image_digest != ref.digest or version.image_reference != ref.reference:
        target.registry.record_image(model, after.semver, ref.digest, ref.reference)
    hooks.on_message(f"{model}@{after.semver}: image {ref.reference} recorded")


def _version(
    target: target_.Target, model: str, semver: str, pinned: str | None
) -> tuple[state.RegistryVersion, str]:
    version = target.registry.get_version(model, semver)
    if version is None:
        raise errors.RegistryError(f"{model}@{semver} is not registered")
    if pinned is not None and pinned != version.sha256:
        raise errors.ArtifactError(
            f"{model}@{semver} is registered with sha256 {version.sha256}, the plan pins {pinned}"
        )
    return version, version.sha256


@contextmanager
def _builder(
    model: str, after: t.BuildImagePayload | t.PushImagePayload, hooks: hooks_.Hook
) -> Iterator[images.ImageBuilder]:
    root, _, name = after.repository.rpartition("/")
    if name != model or not root:
        raise errors.PlanError(f"image repository {after.repository} is not one of {model}")
    config = images.ImagesConfig(after.base, root)
    client = images.connect()
    try:
        yield images.ImageBuilder(
            client,
            config,
            images.default_cache_dir(),
            hooks=Progress(hooks, f"{model}@{after.semver}"),
        )
    finally:
        client.close()
