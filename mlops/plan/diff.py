"""The diff: desired specs + live state -> an ordered plan. Pure: no I/O, no clock.

Per model it picks one of four shapes: nothing to do, an in-place fix of a stable version
(restore traffic, reload, config), a rollout of a new version (first deploy, immediate,
canary with an optional shadow phase, or the continuation of one in progress), or a delete.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from mlops.core import Address
from mlops.plan import capacity as capacity_
from mlops.plan import checks, integrity, order, outside, result, rollout, stable_image, steady
from mlops.plan import engine as engine_
from mlops.plan import types as t
from mlops.spec import models as spec
from mlops.state import models as state

Desired = result.Desired
ModelResult = result.ModelResult


def diff(
    desired: Iterable[Desired],
    live: state.LiveState,
    *,
    workspace: str,
    created_at: str,
    spec_digest: str,
    allow_delete: bool = False,
    costs: spec.WorkspaceCosts | None = None,
    environment: str | None = None,
) -> t.Plan:
    items = sorted(desired, key=lambda item: item.deployment.name)
    result = ModelResult()
    names = [item.deployment.name for item in items]
    for name in sorted(n for n, times in Counter(names).items() if times > 1):
        result.errors.append(f"{name}: declared by more than one spec")
    if not live.runtime_reachable:
        result.warnings.append(
            "the serving runtime is not reachable (engine not started): "
            "planned as if nothing were loaded; apply starts it"
        )
    actions: list[t.Action] = []
    rollbacks: dict[str, dict[str, list[t.Action]]] = {}
    estimates: dict[str, t.Estimate] = {}
    models: dict[str, t.ModelChange] = {}
    for item in items:
        one = plan_model(item, live)
        result.errors.extend(one.errors)
        result.warnings.extend(one.warnings)
        if one.errors or not one.actions:
            continue
        name = item.deployment.name
        actions.extend(one.actions)
        if one.rollback:
            rollbacks[name] = one.rollback
        if one.estimate is not None:
            estimates[name] = one.estimate
        if one.change is not None:
            models[name] = one.change
    gone = removed(live, set(names))
    for name in gone:
        if allow_delete:
            action, change = delete(name, live)
            actions.append(action)
            models[name] = change
        else:
            result.warnings.append(
                f"{name} is managed by mlops but has no spec: it is NOT deleted; "
                "plan with --allow-delete to delete it"
            )
    # One engine serves every model of the local target: its worker count is decided once for
    # all of them, and a change of it is a step of its own, first (plan/engine.py).
    count, scale, notes = engine_.plan_engine(items, live.engine, gone if allow_delete else ())
    result.warnings.extend(notes)
    if count is not None:
        actions = engine_.with_engine_replicas(actions, count)
        rollbacks = {
            name: {at: engine_.with_engine_replicas(undo, count) for at, undo in steps.items()}
            for name, steps in rollbacks.items()
        }
    if scale is not None:
        actions.insert(0, scale)
    return t.Plan(
        created_at=created_at,
        workspace=workspace,
        spec_digest=spec_digest,
        state_fingerprint=live.fingerprint(),
        actions=actions,
        rollback=rollbacks,
        outside_changes=[*outside.detect(live), *integrity.detect(live)],
        estimates=estimates,
        summary=summarize(actions, len(models)),
        errors=result.errors,
        warnings=result.warnings,
        models=models,
        capacity=capacity_.compute(
            items, live, actions, estimates, gone if allow_delete else (), costs
        ),
        environment=environment,
    )


def plan_model(item: Desired, live: state.LiveState) -> ModelResult:
    deployment = item.deployment
    name = deployment.name
    model = deployment.spec.model
    registry = live.registry.get(name) or state.RegistryModel(name=name)
    registered = registry.versions.get(model.version)
    stable = registry.stable
    problems = [
        checks.rejected(name, model.version, registered),
        checks.checksum(name, model, registered),
        checks.changed_bytes(name, model, registered, item.artifact, item.artifact_sha256),
    ]
    stable_version = registry.versions.get(stable) if stable else None
    if stable_version is not None and stable != model.version:
        problems.append(
            checks.breaking_signature(
                name,
                stable_version.semver,
                stable_version.signature,
                model.version,
                model.signature,
            )
        )
    found = [p for p in problems if p]
    if found:
        return ModelResult(errors=found)
    # None means "runtime not reachable"; a reachable runtime without the model is empty.
    runtime = None
    if live.runtime_reachable:
        runtime = live.runtime.get(name) or state.RuntimeModel(name=name)
    seq = order.Sequence(name=name, stable=stable)
    if model.version == stable:
        if live.images is not None:  # workspaces with `images:` (plan/images.py)
            return stable_image.stable(
                item, registry, runtime, seq, shared_engine=live.engine is not None,
                found=live.images,
            )  # fmt: skip
        return steady.steady(item, registry, runtime, seq, shared_engine=live.engine is not None)
    return rollout.new_version(
        item, registry, runtime, seq, live.traffic_rate.get(name), found_images=live.images
    )


def removed(live: state.LiveState, specified: set[str]) -> list[str]:
    """Models mlops manages (it applied them) that still exist but have no spec."""
    return sorted(
        name
        for name in live.last_applied
        if name not in specified and (name in live.registry or name in live.runtime)
    )


def delete(name: str, live: state.LiveState) -> tuple[t.Action, t.ModelChange]:
    registry = live.registry.get(name)
    runtime = live.runtime.get(name)
    before = t.DeleteBefore(
        versions=sorted(registry.versions) if registry else [],
        aliases=dict(registry.aliases) if registry else {},
        loaded=sorted(runtime.loaded) if runtime else [],
        weights=outside.serving_weights(runtime),
    )
    reason = "no spec declares this model any more (--allow-delete): unload it and drop its routes"
    action = t.Action(
        id=f"{name}/01-delete",
        address=Address.deployment(name),
        model=name,
        kind=t.ActionKind.DELETE,
        symbol=t.ChangeSymbol.DELETE,
        before=before,
        after=t.DeletePayload(name=name),
        reason=reason,
    )
    stable = registry.stable if registry else None
    change = t.ModelChange(
        name=name,
        symbol=t.ChangeSymbol.DELETE,
        from_version=stable,
        strategy="delete",
        reason=reason,
    )
    return action, change


def summarize(actions: list[t.Action], models: int) -> t.Summary:
    """Counts per address, Terraform-style: each address by its strongest change."""
    strongest: dict[str, set[t.ChangeSymbol]] = {}
    for action in actions:
        strongest.setdefault(action.address, set()).add(action.symbol)
    add = change = destroy = 0
    for symbols in strongest.values():
        if (
            t.ChangeSymbol.REPLACE in symbols
            or {
                t.ChangeSymbol.CREATE,
                t.ChangeSymbol.DELETE,
            }
            <= symbols
        ):
            add, destroy = add + 1, destroy + 1
        elif t.ChangeSymbol.CREATE in symbols:
            add += 1
        elif t.ChangeSymbol.DELETE in symbols:
            destroy += 1
        elif t.ChangeSymbol.UPDATE in symbols:
            change += 1
    return t.Summary(add=add, change=change, destroy=destroy, models=models)
