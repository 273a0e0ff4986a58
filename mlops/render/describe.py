"""One-line descriptions of actions, gates and weights, shared by the text and markdown views."""

from __future__ import annotations

from typing import Any

from mlops.core import format_duration
from mlops.plan import types as t


def weights(weights: dict[str, int]) -> str:
    return " / ".join(f"{v} {w}%" for v, w in weights.items()) or "no traffic"


def weight_path(change: t.ModelChange) -> str:
    """`shadow 100% -> 5% -> 10% -> 50% -> 100%`, the rollout at a glance."""
    steps = [f"{w}%" for w in change.weights]
    if change.shadow_percent is not None:
        steps.insert(0, f"shadow {change.shadow_percent}%")
    return " -> ".join(steps)


def gate(gate: dict[str, Any]) -> str:
    label = gate.get("name") or gate.get("metric") or "query"
    latency = str(gate.get("metric", "")).startswith("latency")
    parts: list[str] = []
    if gate.get("min") is not None:
        parts.append(f"{label} >= {gate['min']:g}")
    if gate.get("max") is not None:
        parts.append(f"{label} <= {gate['max']:g}{'ms' if latency else ''}")
    if gate.get("max_increase") is not None:
        parts.append(f"{label} <= +{gate['max_increase'] * 100:g}% vs stable")
    return " and ".join(parts) or label


def action(action: t.Action) -> str:
    after = action.after or {}
    before = action.before or {}
    kind = action.kind
    K = t.ActionKind
    if kind is K.REGISTER:
        text = f"artifact {after['artifact']}"
        text += f", sha256 {after['sha256'][:12]}…" if after.get("sha256") else ", sha256 computed"
        return text + (f", validation {after['validation']}" if after.get("validation") else "")
    if kind is K.VERIFY:
        sha = after.get("sha256")
        return f"sha256 {sha[:12]}…" if sha else "sha256 recorded at registration"
    if kind is K.CONFORMANCE_TEST:
        return _conformance(after)
    if kind is K.LOAD:
        return f"{_batching(after['settings'])}, replicas {after['replicas']}, no traffic"
    if kind is K.SET_TRAFFIC:
        text = weights(after.get("weights", {}))
        shadow = after.get("shadow")
        if shadow:
            text += f", mirror {shadow['percent']}% to {shadow['version']}"
        if before:
            text = f"{weights(before.get('weights', {}))} -> {text}"
        return text
    if kind is K.CHECKPOINT_GATE:
        where = "shadow" if after.get("shadow") else f"{after['weight']}%"
        gates = ", ".join(gate(g) for g in after.get("gates", [])) or "no gates"
        return (
            f"at {where}: hold {format_duration(after['hold'])}, every "
            f"{format_duration(after['interval'])}: {gates} (min {after['min_requests']} requests)"
        )
    if kind is K.PROMOTE:
        moves = [f"{alias} = {v}" for alias, v in after.get("aliases", {}).items()]
        moves += [f"clear {alias}" for alias in after.get("clear", [])]
        return ", ".join(moves)
    if kind is K.RETIRE:
        wait = after.get("after_seconds", 0)
        return f"unload {after['semver']}" + (f" after {format_duration(wait)}" if wait else "")
    if kind is K.UPDATE_CONFIG:
        return _config_change(before, after)
    if kind is K.DELETE:
        loaded = ", ".join(before.get("loaded", [])) or "nothing"
        return f"unload {loaded}, drop routes and aliases"
    if kind is K.BUILD_IMAGE:
        return f"image {after.get('image')}"
    return ""


def widest(rollback: dict[str, list[t.Action]]) -> list[t.Action]:
    """The rollback from the furthest point (traffic, unload, aliases): the one to show."""
    return max(rollback.values(), key=len)


def rollback(actions: list[t.Action]) -> str:
    return "; ".join(f"{a.kind} {action(a)}" for a in actions)


def _conformance(after: dict[str, Any]) -> str:
    text = f"{after['metric']} vs baseline {after['baseline']:g}"
    if after.get("tolerance") is not None:
        text = f"{after['metric']} >= {after['baseline'] - after['tolerance']:.4g} (baseline "
        text += f"{after['baseline']:g} - {after['tolerance']:g})"
    limit = after["p99_ms"] * (1 + after["max_increase"])
    return text + f", p99 <= {limit:.3g}ms ({after['p99_ms']:g}ms +{after['max_increase']:.0%})"


def _batching(settings: dict[str, Any]) -> str:
    batching = settings.get("batching", {})
    size = batching.get("max_batch_size", 1)
    if size <= 1:
        return "no batching"
    return f"batch <= {size} within {batching.get('max_queue_delay_ms', 0):g}ms"


def _config_change(before: dict[str, Any], after: dict[str, Any]) -> str:
    parts: list[str] = []
    old = (before.get("settings") or {}).get("batching", {})
    new = (after.get("settings") or {}).get("batching", {})
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            parts.append(f"batching.{key} {old.get(key)} -> {new.get(key)}")
    if before.get("replicas") != after.get("replicas"):
        parts.append(f"replicas {before.get('replicas')} -> {after.get('replicas')}")
    return ", ".join(parts) or "settings"
