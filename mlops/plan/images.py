"""The image steps of a version (workspaces with `images:` in mlops.yaml; docs/images.md).

`build_image` (build, run on loopback, conformance test against the container) and
`push_image` (push, read the digest back, record it on the registry version) are planned for
the spec's version when the OCI registry holds no image of its artifact bytes and settings.
A new version gets them after register/verify and before its conformance test and rollout;
a stable version that has no image yet (e.g. `images:` was added later) gets them alone.
Pure: the registry's answer is in `state.ImagesState`, read by the refresh.
"""

from __future__ import annotations

from mlops.core import Address
from mlops.plan import order, payloads, result
from mlops.plan import types as t
from mlops.state import models as state

K = t.ActionKind
S = t.ChangeSymbol


def needed(item: result.Desired, images: state.ImagesState | None) -> bool:
    """Whether the spec's version needs an image built and pushed."""
    if images is None:
        return False
    deployment = item.deployment
    found = images.models.get(deployment.name)
    if found is None or found.semver != deployment.spec.model.version or found.digest is None:
        return True
    wanted = state.settings_digest(payloads.settings(deployment).engine_json())
    return found.settings_sha256 != wanted


def add_steps(
    seq: order.Sequence,
    item: result.Desired,
    registered: state.RegistryVersion | None,
    images: state.ImagesState | None,
) -> bool:
    """Add build_image and push_image for the spec's version when it needs them."""
    if images is None or not needed(item, images):
        return False
    deployment = item.deployment
    name, model = deployment.name, deployment.spec.model
    version = model.version
    sha256 = model.sha256 or (registered.sha256 if registered is not None else None)
    repository = f"{images.repository}/{name}"
    settings = payloads.settings(deployment)
    found = images.models.get(name)
    why = (
        "the image in the registry has other settings"
        if found is not None and found.digest is not None
        else "no image of these bytes in the registry"
    )
    seq.add(
        K.BUILD_IMAGE,
        Address.version(name, version),
        S.CREATE,
        t.BuildImagePayload(
            semver=version,
            sha256=sha256,
            base=images.base,
            repository=repository,
            settings=settings,
            test=payloads.conformance_test(deployment, item.validation),
        ),
        reason=f"{why}: build {repository}:{version}, run it on loopback, conformance test",
    )
    seq.add(
        K.PUSH_IMAGE,
        Address.version(name, version),
        S.CREATE,
        t.PushImagePayload(
            semver=version,
            sha256=sha256,
            base=images.base,
            repository=repository,
            settings=settings,
        ),
        reason="push the tested image, record its digest on the registry version",
    )
    return True
