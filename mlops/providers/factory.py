"""Pick a provider implementation by the workspace config. Imports are lazy: a provider's
library loads only when that provider is asked for."""

from __future__ import annotations

from mlops import workspace as ws_mod
from mlops.providers import base


def registry(ws: ws_mod.Workspace) -> base.Registry:
    """The model registry: MLflow at `registry_uri` (default sqlite in `.mlops/`)."""
    from mlops.providers import mlflow_registry

    ws.ensure_state_dir()
    return mlflow_registry.MlflowRegistry(ws.registry_uri, ws.artifact_root, workspace=ws.root)
