"""Inline specs and live states for the plan tests (values in, plans out)."""

from __future__ import annotations

import textwrap
from typing import Any

import yaml

from mlops.plan import diff
from mlops.plan import types as t
from mlops.spec import models as spec
from mlops.state import models as state

CREATED_AT = "2026-01-01T00:00:00Z"

BASE = """
apiVersion: mlops/v1
kind: ModelDeployment
metadata: {name: NAME}
spec:
  model:
    version: VERSION
    artifact: models/NAME-VERSION.onnx
    signature:
      inputs:  [{name: input, dtype: FP32, shape: [-1, 4]}]
      outputs: [{name: score, dtype: FP32, shape: [-1, 2]}]
    baseline: {metric: accuracy, value: 0.94, p99_ms: 15}
    validation: {data: data/NAME-val.npz, tolerance: 0.005}
  serving:
    batching: {max_batch_size: 32, max_queue_delay_ms: 5}
  rollout:
    strategy: canary
    steps: [{weight: 5, hold: 60s}, {weight: 50, hold: 120s}, {weight: 100}]
    interval: 10s
"""


def deployment(
    name: str = "fraud", version: str = "1.1.0", extra: str = "", base: str = BASE
) -> spec.ModelDeployment:
    """The base spec with NAME/VERSION filled in; `extra` is YAML merged over `spec:`."""
    data: dict[str, Any] = yaml.safe_load(base.replace("NAME", name).replace("VERSION", version))
    if extra:
        _merge(data["spec"], yaml.safe_load(textwrap.dedent(extra)))
    return spec.ModelDeployment.model_validate(data)


def _merge(into: dict[str, Any], over: dict[str, Any]) -> None:
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def desired(dep: spec.ModelDeployment) -> diff.Desired:
    return diff.Desired(
        deployment=dep,
        artifact=dep.spec.model.artifact,
        validation=dep.spec.model.validation.data if dep.spec.model.validation else None,
    )


def reg_version(
    dep: spec.ModelDeployment,
    status: state.VersionStatus = state.VersionStatus.CONFORMANT,
    reason: str | None = None,
) -> state.RegistryVersion:
    model = dep.spec.model
    return state.RegistryVersion(
        name=dep.name,
        semver=model.version,
        registry_version="1",
        sha256="a" * 64,
        artifact_uri=f"models:/{dep.name}/1",
        signature=model.signature,
        baseline=model.baseline,
        status=status,
        rejected_reason=reason,
    )


def registry(*versions: state.RegistryVersion, **aliases: str) -> state.RegistryModel:
    return state.RegistryModel(
        name=versions[0].name, versions={v.semver: v for v in versions}, aliases=aliases
    )


def runtime(
    name: str,
    weights: dict[str, int],
    loaded: list[str] | None = None,
    shadow: tuple[str, int] | None = None,
    config: dict[str, Any] | None = None,
    replicas: int = 1,
) -> state.RuntimeModel:
    loaded = loaded if loaded is not None else list(weights)
    return state.RuntimeModel(
        name=name,
        loaded={v: "ready" for v in loaded},
        weights=weights,
        shadow=state.ShadowRoute(version=shadow[0], percent=shadow[1]) if shadow else None,
        replicas=replicas,
        replicas_alive=replicas,
        config=config or {},
    )


def plan(
    deps: list[spec.ModelDeployment], live: state.LiveState, *, allow_delete: bool = False
) -> t.Plan:
    return diff.diff(
        [desired(d) for d in deps],
        live,
        workspace="/ws",
        created_at=CREATED_AT,
        spec_digest="digest",
        allow_delete=allow_delete,
    )


def kinds(p: t.Plan) -> list[str]:
    """Compact action list: kind, plus the weights of traffic changes."""
    out: list[str] = []
    for action in p.actions:
        after = action.after
        if isinstance(after, t.TrafficPayload):
            shadow = f" shadow={after.shadow.version}" if after.shadow else ""
            label = ",".join(f"{v}={w}" for v, w in after.weights.items())
            out.append(f"set_traffic[{label}{shadow}]")
        elif isinstance(after, t.CheckpointPayload):
            out.append(f"checkpoint_gate[{after.weight}]")
        elif isinstance(after, t.PromotePayload):
            out.append(f"promote[{','.join(f'{k}={v}' for k, v in after.aliases.items())}]")
        elif isinstance(after, t.RetirePayload | t.LoadPayload):
            out.append(f"{action.kind}[{after.semver}]")
        else:
            out.append(str(action.kind))
    return out
