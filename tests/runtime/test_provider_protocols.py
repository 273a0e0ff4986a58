"""Every method the controller calls on a provider is on a Protocol of providers/base.py, and
every backend answers it; the provider factory constructs and never starts a process."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mlops import errors
from mlops.providers import base, factory
from mlops.providers.engine.runtime import LocalRuntime
from mlops.providers.kubernetes.runtime import KubernetesRuntime
from mlops.providers.metrics import builtin as builtin_metrics
from mlops.providers.metrics import prometheus
from mlops.workspace import Workspace
from tests.runtime import support


def configured(root: Path, **config: str) -> Workspace:
    ws = support.make_workspace(root)
    return dataclasses.replace(ws, config=ws.config.model_copy(update=config))


def test_both_runtimes_declare_what_the_core_calls(tmp_path: Path) -> None:
    local = LocalRuntime(support.make_workspace(tmp_path / "local"))
    cluster = KubernetesRuntime(configured(tmp_path / "k8s", target="kubernetes"))
    for runtime in (local, cluster):
        assert isinstance(runtime, base.Runtime)
    # The engine is not started: nothing measured, no workers, no copy of any artifact.
    assert dict(local.request_rates) == {}
    assert local.worker_admin_urls() == []
    assert local.served_artifact("m", "1.0.0") is None
    # Pods are out of reach and fetch their own artifact: every answer is empty.
    assert dict(cluster.request_rates) == {}
    assert cluster.worker_admin_urls() == []
    assert cluster.served_artifact("m", "1.0.0") is None


def test_only_the_builtin_scraper_takes_its_own_snapshots() -> None:
    scraper = builtin_metrics.BuiltinMetrics(list)
    assert isinstance(scraper, base.Metrics) and isinstance(scraper, base.SelfSampling)
    assert not isinstance(prometheus.PrometheusMetrics("http://127.0.0.1:9"), base.SelfSampling)


def test_builtin_metrics_need_the_local_target(tmp_path: Path) -> None:
    ws = configured(tmp_path, target="kubernetes")
    with pytest.raises(errors.ConfigError, match="needs the local target"):
        factory.metrics(ws, KubernetesRuntime(ws))


@pytest.mark.skipif(not prometheus.installed(), reason="needs the prometheus package")
def test_the_factory_starts_no_prometheus(tmp_path: Path) -> None:
    ws = configured(tmp_path, metrics="prometheus")
    server = prometheus.PrometheusServer(ws)
    with pytest.raises(errors.TransientError, match="Prometheus is not running"):
        factory.metrics(ws, LocalRuntime(ws))
    assert not server.running() and not server.record_file.exists()


@pytest.mark.slow
@pytest.mark.skipif(not prometheus.installed(), reason="needs the prometheus package")
def test_ensure_running_starts_the_workspace_prometheus_with_the_engine(tmp_path: Path) -> None:
    ws = configured(tmp_path, metrics="prometheus")
    server = prometheus.PrometheusServer(ws)
    with support.running(ws, replicas=1) as runtime:
        try:
            assert server.running()
            assert server.sync_targets() == runtime.worker_admin_urls()
            built = factory.metrics(ws, runtime)
            assert isinstance(built, prometheus.PrometheusMetrics) and built.url == server.url
            runtime.ensure_running(1)  # already running: the same server, kept
            assert server.running() and built.url == server.url
        finally:
            server.stop()
