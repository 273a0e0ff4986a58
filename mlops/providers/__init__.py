"""Providers: the only code that talks to the outside world (MLflow, engines, Prometheus...).

One subpackage per backend (`mlflow`, `engine`, `kubernetes`, `metrics`, `images`), each
behind the Protocols in `base`; `factory` picks them from the workspace's configuration.

Before the split these were flat modules (`mlops.providers.local_runtime`, ...). Code outside
this repository still imports them by those names, so an import-system alias maps each old
name to the module that replaced it: `import mlops.providers.local_runtime` and
`from mlops.providers import local_runtime` give the very module `mlops.providers.engine.runtime`
(same object, so monkeypatching either patches both). The new module is imported only when
the old name is, so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence

# Old dotted name -> the module that replaced it. (`mlops.providers.kubernetes` needs no
# entry: the package of that name re-exports what the old module exported.)
MOVED: dict[str, str] = {
    f"{__name__}.{old}": f"{__name__}.{new}"
    for old, new in {
        "mlflow_registry": "mlflow.registry",
        "mlflow_session": "mlflow.session",
        "mlflow_tags": "mlflow.tags",
        "mlflow_reader": "mlflow.reader",
        "mlflow_rest_reader": "mlflow.rest_reader",
        "mlflow_sqlite_reader": "mlflow.sqlite_reader",
        "onnx_artifact": "mlflow.onnx_artifact",
        "artifact_refs": "mlflow.artifact_refs",
        "engine_client": "engine.client",
        "engine_process": "engine.process",
        "local_runtime": "engine.runtime",
        "runtime_view": "engine.view",
        "k8s_cluster": "kubernetes.cluster",
        "k8s_manifests": "kubernetes.manifests",
        "k8s_route": "kubernetes.route",
        "triton": "kubernetes.triton",
        "prometheus": "metrics.prometheus",
        "builtin_metrics": "metrics.builtin",
        "metric_math": "metrics.series",
        "promql": "metrics.promql",
    }.items()
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finder and loader for the names in MOVED: the "loaded" module is the new one."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        # The import system sets __spec__ on whatever this returns; keep the real one to
        # put back, so the module still names itself by its new name.
        spec.loader_state = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # Already executed when imported under its new name; only undo the __spec__ swap.
        alias_spec = module.__spec__
        if alias_spec is not None and alias_spec.loader is self:
            module.__spec__ = alias_spec.loader_state


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())
