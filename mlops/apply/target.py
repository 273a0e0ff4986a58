"""The providers an apply run drives, handed in by `mlops.api` (which picks them by name)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mlops import workspace as workspace_
from mlops.providers import base
from mlops.state import applied
from mlops.state import models as state


@dataclass
class Target:
    ws: workspace_.Workspace
    registry: base.Registry
    runtime: base.Runtime
    # Built on first use: a plan without a checkpoint never needs Prometheus.
    metrics_factory: Callable[[], base.Metrics]
    _metrics: base.Metrics | None = field(default=None, init=False)

    def metrics(self) -> base.Metrics:
        if self._metrics is None:
            self._metrics = self.metrics_factory()
        return self._metrics

    def record_applied(self, model: str) -> None:
        """Write what is now in force for `model` to `.mlops/applied.json`, read back from the
        providers right after our change, so plan can tell later changes made by hand."""
        runtime = (
            self.runtime.refresh([model]).get(model) if self.runtime.reachable() else None
        ) or state.RuntimeModel(name=model)
        registry = self.registry.refresh([model]).get(model) or state.RegistryModel(name=model)
        record = state.AppliedRecord(
            loaded=sorted(runtime.loaded),
            weights={v: w for v, w in sorted(runtime.weights.items())},
            aliases=dict(sorted(registry.aliases.items())),
        )
        applied.update(applied.path_in(self.ws.ensure_state_dir()), model, record)
