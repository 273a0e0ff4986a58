"""A stable version without an image (e.g. `images:` was added to mlops.yaml after it was
deployed): its image steps first, then whatever `steady` restores (plan/images.py)."""

from __future__ import annotations

from mlops.plan import images, order, result, steady
from mlops.state import models as state


def stable(
    item: result.Desired,
    registry: state.RegistryModel,
    runtime: state.RuntimeModel | None,
    seq: order.Sequence,
    *,
    shared_engine: bool,
    found: state.ImagesState | None,
) -> result.ModelResult:
    """The spec names the stable version: its image first (when it has none), then what
    `steady` restores."""
    version = item.deployment.spec.model.version
    added = images.add_steps(seq, item, registry.versions.get(version), found)
    outcome = steady.steady(item, registry, runtime, seq, shared_engine=shared_engine)
    if added and outcome.change is not None:
        why = f"build and push the image of {version}"
        reason = f"{why}; {outcome.change.reason}" if outcome.change.reason else why
        strategy = "image" if not outcome.change.reason else outcome.change.strategy
        outcome.change = outcome.change.model_copy(update={"reason": reason, "strategy": strategy})
    return outcome
