"""One-line descriptions of actions, gates and weights, shared by the text and markdown views."""

from __future__ import annotations

from mlops.core import format_duration
from mlops.plan import types as t
from mlops.spec import models as spec


def weights(weights: dict[str, int]) -> str:
    return " / ".join(f"{v} {w}%" for v, w in weights.items()) or "no traffic"


def weight_path(change: t.ModelChange) -> str:
    """`shadow 100% -> 5% -> 10% -> 50% -> 100%`, the rollout at a glance."""
    steps = [f"{w}%" for w in change.weights]
    if change.shadow_percent is not None:
        steps.insert(0, f"shadow {change.shadow_percent}%")
    return " -> ".join(steps)


def gate(gate: spec.Gate) -> str:
    label = gate.label
    latency = str(gate.metric or "").startswith("latency")
    parts: list[str] = []
    if gate.min is not None:
        parts.append(f"{label} >= {gate.min:g}")
    if gate.max is not None:
        parts.append(f"{label} <= {gate.max:g}{'ms' if latency else ''}")
    if gate.max_increase is not None:
        parts.append(f"{label} <= +{gate.max_increase * 100:g}% vs stable")
    if gate.max_decrease is not None:
        parts.append(f"{label} >= -{gate.max_decrease * 100:g}% vs stable")
    if gate.min_outcomes is not None:
        parts.append(f"over >= {gate.min_outcomes} outcomes")
    return " and ".join(parts) or label


def action(action: t.Action) -> str:
    after, before = action.after, action.before
    match after:
        case t.RegisterPayload():
            text = f"artifact {after.artifact}"
            text += f", sha256 {after.sha256[:12]}…" if after.sha256 else ", sha256 computed"
            return text + (f", validation {after.validation.data}" if after.validation else "")
        case t.VerifyPayload():
            sha = after.sha256
            return f"sha256 {sha[:12]}…" if sha else "sha256 recorded at registration"
        case t.ConformancePayload():
            return _conformance(after)
        case t.LoadPayload():
            text = f"{_batching(after.settings.batching)}, replicas {after.replicas}"
            return text + _autoscaling(after.settings) + ", no traffic"
        case t.TrafficPayload():
            text = weights(after.weights)
            if after.shadow:
                text += f", mirror {after.shadow.percent}% to {after.shadow.version}"
            if isinstance(before, t.TrafficPayload):
                text = f"{weights(before.weights)} -> {text}"
            return text
        case t.CheckpointPayload():
            where = "shadow" if after.shadow else f"{after.weight}%"
            gates = ", ".join(gate(g) for g in after.gates) or "no gates"
            return (
                f"at {where}: hold {format_duration(after.hold)}, every "
                f"{format_duration(after.interval)}: {gates} (min {after.min_requests} requests)"
            )
        case t.PromotePayload():
            moves = [f"{alias} = {v}" for alias, v in after.aliases.items()]
            moves += [f"clear {alias}" for alias in after.clear]
            return ", ".join(moves)
        case t.RetirePayload():
            wait = after.after_seconds
            return f"unload {after.semver}" + (f" after {format_duration(wait)}" if wait else "")
        case t.UpdateConfigPayload():
            changed = _config_change(before, after)
            # Hardware and autoscaling are not settings: the reason names them (display only).
            serving = action.reason.partition(" (")[2].rstrip(")")
            return serving if changed == "settings" and serving else changed
        case t.ScaleEnginePayload():
            return _engine_change(before, after)
        case t.BuildImagePayload():
            base = after.base.split("@")[0]
            return (
                f"{after.repository}:{after.semver} from {base}, then on the running container: "
                + _conformance(after.test)
            )
        case t.PushImagePayload():
            return f"{after.repository}:{after.semver}, digest read back and recorded"
        case t.DeletePayload():
            loaded = before.loaded if isinstance(before, t.DeleteBefore) else []
            return f"unload {', '.join(loaded) or 'nothing'}, drop routes and aliases"
    return ""


def widest(rollback: dict[str, list[t.Action]]) -> list[t.Action]:
    """The rollback from the furthest point (traffic, unload, aliases): the one to show."""
    return max(rollback.values(), key=len)


def rollback(actions: list[t.Action]) -> str:
    return "; ".join(f"{a.kind} {action(a)}" for a in actions)


def _conformance(after: t.ConformancePayload) -> str:
    text = f"{after.metric} vs baseline {after.baseline:g}"
    if after.tolerance is not None:
        text = f"{after.metric} >= {after.baseline - after.tolerance:.4g} (baseline "
        text += f"{after.baseline:g} - {after.tolerance:g})"
    limit = after.p99_ms * (1 + after.max_increase)
    return text + f", p99 <= {limit:.3g}ms ({after.p99_ms:g}ms +{after.max_increase:.0%})"


def _autoscaling(settings: t.EngineSettings) -> str:
    """`, autoscaling 1..3 on queue_depth 4 per worker (cool-down 15s up, 2m down)`"""
    scaling = settings.autoscaling
    if scaling is None:
        return ""
    up = format_duration(scaling.scale_up_cooldown)
    down = format_duration(scaling.scale_down_cooldown)
    return (
        f", autoscaling {scaling.min}..{scaling.max} on {scaling.metric} {scaling.target:g} "
        f"per worker (cool-down {up} up, {down} down)"
    )


def _batching(batching: spec.Batching) -> str:
    if batching.max_batch_size <= 1:
        return "no batching"
    return f"batch <= {batching.max_batch_size} within {batching.max_queue_delay_ms:g}ms"


def _config_change(before: t.BeforePayload | None, after: t.UpdateConfigPayload) -> str:
    parts: list[str] = []
    observed = before if isinstance(before, t.ObservedConfig) else None
    old = dict((observed.settings if observed else {}).get("batching") or {})
    new = after.settings.batching.model_dump(mode="json", exclude_none=True)
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            parts.append(f"batching.{key} {old.get(key)} -> {new.get(key)}")
    replicas = observed.replicas if observed else None
    if replicas != after.replicas:
        parts.append(f"replicas {replicas} -> {after.replicas}")
    return ", ".join(parts) or "settings"


def _engine_change(before: t.BeforePayload | None, after: t.ScaleEnginePayload) -> str:
    """`workers 1 -> 2, new workers join once they serve every version, surplus ones drain
    first: fraud-scorer 1 -> 2 (replicas 1..2), scorer-b new: 2 (replicas 2..2)`."""
    running = before.replicas if isinstance(before, t.EngineBefore) else 0
    how = (
        "new workers join once they serve every version"
        if after.replicas > running
        else "surplus workers drain first"
    )
    effects = []
    for model in after.models:
        change = f"{model.before} -> {model.after}" if model.before else f"new: {model.after}"
        if model.min is not None and model.max is not None:
            change += f" (replicas {model.min}..{model.max}"
            change += ", above its max)" if model.after > model.max else ")"
        else:
            change += " (no spec in this plan)"
        effects.append(f"{model.name} {change}")
    return f"workers {running} -> {after.replicas}, {how}: " + ", ".join(effects)
