"""`mlops status`: live versions, weights, replicas, rollout state and gate history.

Reads the providers (registry, runtime) and the files apply keeps (rollout records, the
journal pointer, the lock); changes nothing. The JSON document is documented in
docs/status.md and versioned by `format_version`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops import errors
from mlops.apply import journal, lock, recorders
from mlops.apply import target as target_
from mlops.providers import base
from mlops.state import models as state

FORMAT_VERSION = 1
GATE_ROUNDS = 20  # most recent gate rounds shown per model


def collect(target: target_.Target, name: str | None = None) -> dict[str, Any]:
    ws = target.ws
    names = [name] if name else None
    registry = target.registry.refresh(names)
    reachable = target.runtime.reachable()
    runtime = target.runtime.refresh(names) if reachable else {}
    rollouts = recorders.read_rollouts(ws.state_dir)
    if name is not None and name not in registry and name not in runtime and name not in rollouts:
        raise errors.UsageError(
            f"model {name!r} is not registered, served or rolled out in this workspace"
        )
    every = sorted(set(registry) | set(runtime) | ({name} if name else set(rollouts)))
    held = lock.read(ws.state_dir)
    run = journal.Journal.current(ws.state_dir)
    return {
        "format_version": FORMAT_VERSION,
        "workspace": str(ws.root),
        "runtime_reachable": reachable,
        **_address(target.runtime, reachable),
        "cluster": (
            target.runtime.cluster_report(names)
            if reachable and isinstance(target.runtime, base.ReportsCluster)
            else None
        ),
        "lock": _lock(held),
        "run": None
        if run is None
        else {"id": run.run_id, "open": not run.finished, "outcome": run.outcome()},
        "serve_runtime": ws.config.serve.runtime,
        "models": {
            model: _model(
                model,
                registry.get(model),
                runtime.get(model),
                rollouts.get(model),
                ws.config.serve.runtime,
            )
            for model in every
        },
        "engine_scaling": _engine_scaling(ws.state_dir / "engine") if reachable else None,
    }


SCALE_EVENTS = 10  # the newest worker-count changes shown (mlops/serving/autoscale.py)


def _engine_scaling(state_dir: Path) -> dict[str, Any] | None:
    """The local engine's worker count, its autoscaling policy and why the count changed,
    from the files its supervisor keeps (None on other targets)."""

    def read(name: str, limit: int) -> str:
        try:
            with (state_dir / name).open("rb") as handle:
                return handle.read(limit).decode("utf-8", "replace")
        except OSError:
            return ""

    def parse(text: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            return None

    count = parse(read("replicas.json", 4096))
    if not isinstance(count, dict):
        return None
    policy = parse(read("autoscale.json", 64 << 10))
    lines = read("scale-events.jsonl", 256 << 10).splitlines()[-SCALE_EVENTS:]
    events = [e for e in map(parse, lines) if isinstance(e, dict)]
    return {
        "replicas": count.get("replicas"),
        "autoscaling": policy if isinstance(policy, dict) else None,
        "events": events,
    }


def _address(runtime: base.Runtime, reachable: bool) -> dict[str, Any]:
    """The inference URL, or what is missing for one (a gateway without an address is a
    state to show, not a failure of `status`)."""
    if not reachable:
        return {"inference_url": None, "inference_url_missing": None}
    try:
        return {"inference_url": runtime.inference_url(), "inference_url_missing": None}
    except (errors.TransientError, errors.ConfigError) as exc:
        return {"inference_url": None, "inference_url_missing": exc.message}


def _cluster_lines(cluster: dict[str, Any] | None, name: str) -> list[str]:
    """Per version: replicas and their owner, pods not ready; the route's acceptance."""
    model = (cluster or {}).get("models", {}).get(name)
    if not model:
        return []
    lines = []
    for semver, row in sorted(model["versions"].items()):
        owner = row.get("replicas_owner") or "-"
        wanted = row["replicas"] if row["replicas"] is not None else "autoscaled"
        text = f"  pods {semver}: {row['ready']}/{wanted} ready (replicas owned by {owner})"
        waiting = [p for p in row["pods"] if not p["ready"]]
        if waiting:
            text += "; not ready: " + ", ".join(
                f"{p['name']} ({p['reason'] or p['phase']})" for p in waiting[:5]
            )
        lines.append(text)
    route = model.get("route")
    if route:
        accepted = route["accepted"]
        state_ = {True: "accepted", False: "refused", None: "not accepted yet"}[accepted["status"]]
        why = f": {accepted['reason']}" if accepted["status"] is not True else ""
        lines.append(f"  route {route['name']} generation {route['generation']}: {state_}{why}")
    return lines


def _lock(held: lock.LockInfo | None) -> dict[str, Any] | None:
    if held is None:
        return None
    return {
        "id": held.id,
        "holder": held.holder,
        "since": held.since,
        "plan": held.plan,
        "operation": held.operation,
        "holder_alive": held.alive,
    }


def _model(
    name: str,
    registered: state.RegistryModel | None,
    live: state.RuntimeModel | None,
    rollout: dict[str, Any] | None,
    serve_runtime: str = "process",
) -> dict[str, Any]:
    versions = sorted(
        set(registered.versions if registered else {}) | set(live.loaded if live else {})
    )
    rows = []
    for semver in versions:
        info = registered.versions.get(semver) if registered else None
        rows.append(
            {
                "semver": semver,
                "registered": info is not None,
                "status": info.status.value if info else None,
                "rejected_reason": info.rejected_reason if info else None,
                "conformance": info.conformance if info else None,
                "loaded": live.loaded.get(semver) if live else None,
                "weight": live.weights.get(semver, 0) if live else 0,
                "image_digest": info.image_digest if info else None,
                "image": info.image_reference if info else None,
            }
        )
    return {
        "name": name,
        "stable": registered.stable if registered else None,
        "canary": registered.canary if registered else None,
        "versions": rows,
        "weights": dict(live.weights) if live else {},
        "shadow": live.shadow.model_dump() if live and live.shadow else None,
        "generation": live.generation if live else None,
        "replicas": live.replicas if live else 0,
        "replicas_alive": live.replicas_alive if live else 0,
        "rollout": _rollout(rollout),
        "serving_images": _serving_images(rows, serve_runtime),
    }


def _serving_images(rows: list[dict[str, Any]], serve_runtime: str) -> list[dict[str, Any]]:
    """The image digest of each version that takes traffic. With `serve.runtime: process` no
    image runs: the digest is the one recorded for the serving version (its image holds the
    same artifact bytes the engine serves), and `source` says so."""
    source = "container" if serve_runtime == "container" else "recorded (process runtime)"
    return [
        {
            "semver": row["semver"],
            "weight": row["weight"],
            "image_digest": row["image_digest"],
            "image": row["image"],
            "source": source,
        }
        for row in rows
        if row["weight"] > 0
    ]


def _rollout(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "run_id": record.get("run_id"),
        "status": record.get("status"),
        "stable": record.get("stable"),
        "canary": record.get("canary"),
        "step": record.get("step"),
        "reason": record.get("reason"),
        "paused_checkpoint": record.get("paused_checkpoint")
        if record.get("status") == "paused"
        else None,
        "decision": record.get("decision"),
        "updated_at": record.get("updated_at"),
        "gates": list(record.get("gates", []))[-GATE_ROUNDS:],
    }


def render_text(document: dict[str, Any]) -> str:
    """The human view of `collect`'s document."""
    lines: list[str] = []
    held = document.get("lock")
    if held:
        alive = "" if held["holder_alive"] is not False else " (holder not running: stale)"
        lines.append(f"lock {held['id']}: {held['operation']} by {held['holder']}{alive}")
    if not document["runtime_reachable"]:
        lines.append("engine: not running (apply starts it)")
    scaling = document.get("engine_scaling")
    if scaling:
        policy = (scaling.get("autoscaling") or {}).get("text") or "off"
        lines.append(f"engine: {scaling.get('replicas')} workers; autoscaling: {policy}")
        for event in scaling.get("events", [])[-3:]:
            if event.get("by") == "restart":  # a worker died and the supervisor replaced it
                lines.append(f"  {event.get('at')} restart: {event.get('reason')}")
                continue
            lines.append(
                f"  {event.get('at')} workers {event.get('from')} -> {event.get('to')} "
                f"({event.get('by')}): {event.get('reason')}"
            )
    if document.get("inference_url_missing"):
        lines.append(f"inference url: none ({document['inference_url_missing']})")
    if not document["models"]:
        lines.append("no models")
    for name, model in document["models"].items():
        lines.append("")
        head = f"{name}: stable {model['stable'] or '-'}"
        if model["canary"]:
            head += f", canary {model['canary']}"
        head += f"; replicas {model['replicas_alive']}/{model['replicas']}"
        if model["generation"] is not None:
            head += f"; routing generation {model['generation']}"
        lines.append(head)
        for row in model["versions"]:
            flags = [row["status"] or "unregistered"]
            if row["loaded"]:
                flags.append(f"loaded ({row['loaded']})")
            text = f"  {row['semver']:<12} {row['weight']:>3}%  {', '.join(flags)}"
            if row["rejected_reason"]:
                text += f"  rejected: {row['rejected_reason']}"
            lines.append(text)
        for image in model.get("serving_images") or []:
            if image["image_digest"]:  # none recorded: a workspace without `images:`
                lines.append(f"  image {image['semver']}: {image['image']} ({image['source']})")
        if model["shadow"]:
            shadow = model["shadow"]
            lines.append(f"  shadow: {shadow['percent']}% mirrored to {shadow['version']}")
        lines.extend(_cluster_lines(document.get("cluster"), name))
        lines.extend(_rollout_lines(name, model["rollout"]))
    return "\n".join(lines).lstrip("\n") + "\n"


TEXT_ROUNDS = 5  # gate rounds in the text view; the JSON document has up to GATE_ROUNDS


def _rollout_lines(name: str, rollout: dict[str, Any] | None) -> list[str]:
    if rollout is None:
        return []
    lines = [f"  rollout {rollout['run_id']}: {rollout['status']}"]
    step = rollout.get("step")
    if step and rollout["status"] == "in_progress":
        # Weight 0 is only ever the shadow phase: steps have a weight of at least 1.
        where = "in the shadow phase" if step.get("weight") == 0 else f"at {step.get('weight')}%"
        lines[0] += f" {where} (hold ends {step.get('ends_at')})"
    if rollout.get("reason"):
        lines.append(f"    reason: {rollout['reason']}")
    if rollout["status"] == "paused":
        lines.append(f"    resume with `mlops promote {name}`, undo with `mlops rollback {name}`")
    rounds = rollout["gates"]
    if len(rounds) > TEXT_ROUNDS:
        lines.append(
            f"    gate rounds: last {TEXT_ROUNDS} of {len(rounds)} shown "
            f"(`mlops status {name} --format json` has them all)"
        )
    for round_ in rounds[-TEXT_ROUNDS:]:
        measurements = round_["measurements"]
        shadow = any(m.get("traffic") == "shadow" for m in measurements)
        where = "shadow" if shadow else f"at {round_['weight']}%"
        values = ", ".join(
            f"{m['gate']}={_value(m['value'])} {m['verdict']} ({_requests(m)})"
            for m in measurements
        )
        lines.append(f"    {round_['at']} {where}: {values} -> {round_['decision']}")
    return lines


def _requests(measurement: dict[str, Any]) -> str:
    """How many requests the value stands on: routed ones, or a shadow's mirrored ones."""
    count = float(measurement.get("requests") or 0.0)
    text = f"{count:.0f}" if count.is_integer() else f"{count:.1f}"
    if measurement.get("gate") == "shadow_agreement":
        return f"{text} compared"
    if " outcomes" in str(measurement.get("threshold")):  # a feedback (business) gate
        return f"{text} outcomes"
    return f"{text} mirrored" if measurement.get("traffic") == "shadow" else f"{text} routed"


def _value(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4g}"
