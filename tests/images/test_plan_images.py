"""The image steps in the pure planner (plan/images.py): values in, plans out."""

from __future__ import annotations

import pytest

from mlops.plan import payloads
from mlops.plan import types as t
from mlops.state import models as state
from tests.plan import helpers as h

BASE = "127.0.0.1:5000/mlops-base@sha256:" + "b" * 64
REPO = "127.0.0.1:5000/team"
DIGEST = "sha256:" + "c" * 64


def images(dep_version: str = "1.1.0", **found: str | None) -> state.ImagesState:
    """The registry's answer for `fraud` at `dep_version` (`digest`, `settings_sha256`)."""
    image = state.ImageState(semver=dep_version, sha256="a" * 64, repository=f"{REPO}/fraud")
    return state.ImagesState(
        base=BASE, repository=REPO, models={"fraud": image.model_copy(update=found)}
    )


def settings_sha(version: str = "1.1.0") -> str:
    return state.settings_digest(payloads.settings(h.deployment(version=version)).engine_json())


def new_version_live(found: state.ImagesState | None) -> state.LiveState:
    stable = h.reg_version(h.deployment(version="1.0.0"))
    return state.LiveState(
        registry={"fraud": h.registry(stable, stable="1.0.0")},
        runtime={"fraud": h.runtime("fraud", {"1.0.0": 100})},
        images=found,
    )


def test_without_images_the_plan_is_as_before() -> None:
    dep = h.deployment()
    before = h.plan([dep], new_version_live(None))
    assert not {"build_image", "push_image"} & set(h.kinds(before))


def test_a_new_version_without_an_image_builds_and_pushes_before_its_conformance_test() -> None:
    dep = h.deployment()
    plan = h.plan([dep], new_version_live(images()))
    kinds = h.kinds(plan)
    assert kinds[:5] == ["register", "verify", "build_image", "push_image", "conformance_test"]
    build, push = plan.actions[2], plan.actions[3]
    assert isinstance(build.after, t.BuildImagePayload)
    assert isinstance(push.after, t.PushImagePayload)
    assert build.address == push.address == "version.fraud@1.1.0"
    assert build.after.repository == push.after.repository == f"{REPO}/fraud"
    assert build.after.base == BASE
    assert build.after.sha256 is None  # not registered yet: the one registration records
    assert build.after.test == payloads.conformance_test(dep, "data/fraud-val.npz")
    assert push.depends_on == [build.id]
    # Nothing to undo before traffic: the image steps carry no rollback.
    assert build.id not in plan.rollback.get("fraud", {})


def test_an_image_of_the_same_bytes_and_settings_is_no_change() -> None:
    found = images(digest=DIGEST, settings_sha256=settings_sha())
    assert not {"build_image", "push_image"} & set(
        h.kinds(h.plan([h.deployment()], new_version_live(found)))
    )


def test_an_image_with_other_settings_is_rebuilt() -> None:
    found = images(digest=DIGEST, settings_sha256="d" * 64)
    plan = h.plan([h.deployment()], new_version_live(found))
    build = next(a for a in plan.actions if a.kind is t.ActionKind.BUILD_IMAGE)
    assert build.reason.startswith("the image in the registry has other settings")


@pytest.mark.parametrize("digest", [None, DIGEST])
def test_a_stable_version_gets_its_image_alone(digest: str | None) -> None:
    dep = h.deployment(version="1.0.0")
    version = h.reg_version(dep)
    live = state.LiveState(
        registry={"fraud": h.registry(version, stable="1.0.0")},
        runtime={"fraud": h.runtime("fraud", {"1.0.0": 100})},
        images=images("1.0.0", digest=digest, settings_sha256=settings_sha("1.0.0")),
    )
    plan = h.plan([dep], live)
    if digest is not None:
        assert plan.actions == []
        return
    assert h.kinds(plan) == ["build_image", "push_image"]
    assert plan.actions[0].after.sha256 == "a" * 64  # type: ignore[union-attr]
    change = plan.models["fraud"]
    assert change.strategy == "image" and "image of 1.0.0" in change.reason


def test_images_do_not_move_the_fingerprint() -> None:
    """The image steps look in the OCI registry again before they act, so the registry's
    answer is not part of the state a saved plan is checked against."""
    assert new_version_live(None).fingerprint() == new_version_live(images()).fingerprint()


def test_a_recorded_image_digest_is_part_of_the_fingerprint() -> None:
    """(A version without one digests as before images existed: tests/plan/golden.)"""
    version = h.reg_version(h.deployment(version="1.0.0"))
    live = state.LiveState(registry={"fraud": h.registry(version, stable="1.0.0")})
    recorded = version.model_copy(update={"image_digest": DIGEST})
    other = state.LiveState(registry={"fraud": h.registry(recorded, stable="1.0.0")})
    assert live.fingerprint() != other.fingerprint()
