"""Plans written inline for policy tests: the payload shapes of mlops/plan/types.ActionKind.

`canary()`, `immediate()`, `first()` and `delete()` return one model's actions; `plan()`
joins them. Numbers mirror what the planner writes (holds in seconds, weights in percent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from mlops.core import Address
from mlops.plan import types as t

K = t.ActionKind
S = t.ChangeSymbol
GATES = [{"metric": "error_rate", "max": 0.001}, {"metric": "latency_p99", "max_increase": 0.2}]
DEFAULT_STEPS = ((5, 300.0), (10, 600.0), (50, 900.0))


class _Seq:
    def __init__(self, name: str) -> None:
        self.name = name
        self.actions: list[t.Action] = []

    def add(
        self,
        kind: t.ActionKind,
        address: str,
        after: dict[str, Any],
        before: dict[str, Any] | None = None,
        symbol: t.ChangeSymbol = S.UPDATE,
    ) -> None:
        index = len(self.actions) + 1
        self.actions.append(
            t.Action(
                id=f"{self.name}/{index:02d}-{kind}",
                address=address,
                kind=kind,
                symbol=symbol,
                before=before,
                after=after,
                reason="display only",
                depends_on=[self.actions[-1].id] if self.actions else [],
            )
        )


SIGNATURE = {
    "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, 4]}],
    "outputs": [{"name": "score", "dtype": "FP32", "shape": [-1, 2]}],
}


def _introduce(seq: _Seq, version: str, sha256: str | None) -> None:
    address = Address.version(seq.name, version)
    seq.add(
        K.REGISTER,
        address,
        {
            "semver": version,
            "artifact": "models/m.onnx",
            "sha256": sha256,
            "signature": SIGNATURE,
            "baseline": {"value": 0.9, "p99_ms": 10.0},
            "validation": None,
        },
        symbol=S.CREATE,
    )
    seq.add(K.VERIFY, address, {"semver": version, "sha256": sha256 or "b" * 64}, symbol=S.READ)
    seq.add(
        K.LOAD,
        address,
        {"semver": version, "settings": {"signature": SIGNATURE}, "replicas": 1},
        symbol=S.CREATE,
    )


def _checkpoint(
    stable: str,
    new: str,
    weight: int,
    hold: float,
    gates: Sequence[dict[str, Any]],
    *,
    shadow: bool = False,
    min_requests: int = 100,
) -> dict[str, Any]:
    return {
        "stable": stable,
        "canary": new,
        "weight": weight,
        "hold": hold,
        "interval": 10.0,
        "min_requests": min_requests,
        "consecutive_errors": 4,
        "gates": list(gates),
        "shadow": shadow,
    }


def canary(
    name: str = "fraud",
    stable: str = "1.0.0",
    new: str = "1.1.0",
    steps: Iterable[tuple[int, float]] = DEFAULT_STEPS,
    gates: Sequence[dict[str, Any]] = GATES,
    shadow: tuple[int, float] | None = None,
    min_requests: int = 100,
    sha256: str | None = "a" * 64,
    resume_at: int | None = None,
) -> list[t.Action]:
    """A gated rollout. `resume_at`: the new version already has this weight (no set_traffic
    for it; the plan re-checks it first), as when a paused rollout continues."""
    seq = _Seq(name)
    traffic = Address.traffic(name)
    if resume_at is None:
        _introduce(seq, new, sha256)
        seq.add(K.PROMOTE, Address.deployment(name), {"aliases": {"canary": new}, "clear": []})
    if shadow is not None:
        percent, hold = shadow
        seq.add(
            K.SET_TRAFFIC,
            traffic,
            {"weights": {stable: 100}, "shadow": {"version": new, "percent": percent}},
        )
        if hold > 0:
            seq.add(
                K.CHECKPOINT_GATE,
                traffic,
                _checkpoint(stable, new, 0, hold, gates, shadow=True),
                symbol=S.READ,
            )
    for weight, hold in steps:
        if weight != resume_at:
            seq.add(
                K.SET_TRAFFIC,
                traffic,
                {"weights": {stable: 100 - weight, new: weight}, "shadow": None},
            )
        if hold > 0:
            seq.add(
                K.CHECKPOINT_GATE,
                traffic,
                _checkpoint(stable, new, weight, hold, gates, min_requests=min_requests),
                symbol=S.READ,
            )
    seq.add(K.SET_TRAFFIC, traffic, {"weights": {new: 100}, "shadow": None})
    seq.add(
        K.PROMOTE,
        Address.deployment(name),
        {"aliases": {"stable": new}, "clear": ["canary"]},
        before={"aliases": {"stable": stable, "canary": new}},
    )
    seq.add(
        K.RETIRE,
        Address.version(name, stable),
        {"semver": stable, "after_seconds": 600.0},
        symbol=S.DELETE,
    )
    return seq.actions


def immediate(
    name: str = "fraud", stable: str = "1.0.0", new: str = "1.1.0", sha256: str | None = "a" * 64
) -> list[t.Action]:
    seq = _Seq(name)
    _introduce(seq, new, sha256)
    seq.add(
        K.SET_TRAFFIC,
        Address.traffic(name),
        {"weights": {new: 100}, "shadow": None},
        before={"weights": {stable: 100}, "shadow": None},
    )
    seq.add(
        K.PROMOTE,
        Address.deployment(name),
        {"aliases": {"stable": new}, "clear": ["canary"]},
        before={"aliases": {"stable": stable}},
    )
    return seq.actions


def first(name: str = "fraud", new: str = "1.0.0", sha256: str | None = "a" * 64) -> list[t.Action]:
    seq = _Seq(name)
    _introduce(seq, new, sha256)
    seq.add(
        K.SET_TRAFFIC,
        Address.traffic(name),
        {"weights": {new: 100}, "shadow": None},
        symbol=S.CREATE,
    )
    seq.add(
        K.PROMOTE,
        Address.deployment(name),
        {"aliases": {"stable": new}, "clear": ["canary"]},
        before={"aliases": {}},
        symbol=S.CREATE,
    )
    return seq.actions


def restore(name: str = "fraud", stable: str = "1.0.0", stray: str = "1.1.0") -> list[t.Action]:
    """All traffic back to the stable version after a hand-made change: not a rollout."""
    seq = _Seq(name)
    seq.add(
        K.SET_TRAFFIC,
        Address.traffic(name),
        {"weights": {stable: 100}, "shadow": None},
        before={"weights": {stable: 50, stray: 50}, "shadow": None},
    )
    return seq.actions


def delete(name: str = "old") -> list[t.Action]:
    seq = _Seq(name)
    seq.add(
        K.DELETE,
        Address.deployment(name),
        {"name": name},
        symbol=S.DELETE,
        before={
            "versions": ["1.0.0"],
            "aliases": {"stable": "1.0.0"},
            "loaded": ["1.0.0"],
            "weights": {"1.0.0": 100},
        },
    )
    return seq.actions


def plan(*models: list[t.Action]) -> t.Plan:
    return t.Plan(
        created_at="2026-01-01T00:00:00Z",
        workspace="/ws",
        spec_digest="digest",
        state_fingerprint="sha256:0",
        actions=[a for actions in models for a in actions],
    )
