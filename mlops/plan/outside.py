"""Outside changes: live state that differs from what mlops itself last applied."""

from __future__ import annotations

from mlops.core import Address
from mlops.plan import types as t
from mlops.state import models as state


def serving_weights(runtime: state.RuntimeModel | None) -> dict[str, int]:
    """Weights that actually carry traffic (zero entries are bookkeeping)."""
    if runtime is None:
        return {}
    return {v: w for v, w in sorted(runtime.weights.items()) if w > 0}


def detect(live: state.LiveState) -> list[t.OutsideChange]:
    changes: list[t.OutsideChange] = []
    for name, record in sorted(live.last_applied.items()):
        registry = live.registry.get(name)
        if registry is None:
            changes.append(
                t.OutsideChange(
                    address=Address.deployment(name),
                    field="registered",
                    expected=True,
                    actual=False,
                )
            )
        elif dict(sorted(registry.aliases.items())) != dict(sorted(record.aliases.items())):
            changes.append(
                t.OutsideChange(
                    address=Address.deployment(name),
                    field="aliases",
                    expected=dict(sorted(record.aliases.items())),
                    actual=dict(sorted(registry.aliases.items())),
                )
            )
        if not live.runtime_reachable:
            # An engine that is not running was stopped (`mlops down`), not edited by hand.
            continue
        runtime = live.runtime.get(name)
        loaded = sorted(runtime.loaded) if runtime else []
        if loaded != sorted(record.loaded):
            changes.append(
                t.OutsideChange(
                    address=Address.deployment(name),
                    field="loaded",
                    expected=sorted(record.loaded),
                    actual=loaded,
                )
            )
        expected = {v: w for v, w in sorted(record.weights.items()) if w > 0}
        actual = serving_weights(runtime)
        if actual != expected:
            changes.append(
                t.OutsideChange(
                    address=Address.traffic(name), field="weights", expected=expected, actual=actual
                )
            )
    return changes
