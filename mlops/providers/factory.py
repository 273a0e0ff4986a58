"""Pick a provider implementation by the workspace config. Imports are lazy: a provider's
library loads only when that provider is asked for."""

from __future__ import annotations

from mlops import workspace as ws_mod
from mlops.providers import base


def registry(ws: ws_mod.Workspace) -> base.Registry:
    """The model registry: MLflow at `registry_uri` (default sqlite in `.mlops/`)."""
    from mlops.providers.mlflow import registry as mlflow_registry

    ws.ensure_state_dir()
    return mlflow_registry.MlflowRegistry(ws.registry_uri, ws.artifact_root, workspace=ws.root)


def runtime(ws: ws_mod.Workspace) -> base.Runtime:
    """The serving runtime of the workspace's target (local: the mlops engine)."""
    from mlops import errors

    if ws.config.target == "kubernetes":
        from mlops.providers.kubernetes import runtime as kubernetes

        return kubernetes.KubernetesRuntime(ws)
    if ws.config.target != "local":
        raise errors.ConfigError(f"target {ws.config.target!r} has no runtime provider yet")
    if ws.config.serve.runtime == "container":
        from mlops.providers.containers import runtime as container_runtime

        return container_runtime.ContainerRuntime(ws)
    from mlops.providers.engine import runtime as local_runtime

    return local_runtime.LocalRuntime(ws)


def metrics(ws: ws_mod.Workspace, runtime: base.Runtime) -> base.Metrics:
    """Gate metrics per `mlops.yaml` `metrics`: a Prometheus URL as given; `prometheus` reads
    the workspace's own Prometheus (the local runtime's `ensure_running` starts it with the
    engine), or falls back to the built-in scraper when the Prometheus package is not
    installed; `builtin` scrapes the engine's /metrics directly. Nothing is started here.
    Keep one instance per apply run: the built-in scraper's series lives in the object."""
    from mlops import errors
    from mlops.providers.metrics import builtin as builtin_metrics
    from mlops.providers.metrics import prometheus

    setting = ws.config.metrics
    if setting.startswith(("http://", "https://")):
        from mlops.providers.kubernetes import runtime as kubernetes

        if isinstance(runtime, kubernetes.KubernetesRuntime):
            return runtime.metrics(setting)  # the engine's metric names (Triton's or ours)
        return prometheus.PrometheusMetrics(setting)
    if ws.config.target != "local":
        raise errors.ConfigError(
            f"metrics: {setting} needs the local target; set a Prometheus URL the cluster feeds"
        )
    if (
        setting == "prometheus"
        and prometheus.installed()
        and ws.config.serve.runtime != "container"
    ):
        return prometheus.PrometheusMetrics(prometheus.PrometheusServer(ws).url)
    return builtin_metrics.BuiltinMetrics(runtime.worker_admin_urls)
