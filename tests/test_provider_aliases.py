"""The flat provider module names from before the split by backend still import, as the very
module that replaced each, and only when asked for (importing mlops.providers stays cheap)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import mlops.providers
from mlops.providers import MOVED

# Every name the flat package had, not only the table: a missing entry must fail here.
OLD_NAMES = [
    "artifact_refs",
    "builtin_metrics",
    "engine_client",
    "engine_process",
    "k8s_cluster",
    "k8s_manifests",
    "k8s_route",
    "local_runtime",
    "metric_math",
    "mlflow_reader",
    "mlflow_registry",
    "mlflow_rest_reader",
    "mlflow_session",
    "mlflow_sqlite_reader",
    "mlflow_tags",
    "onnx_artifact",
    "prometheus",
    "promql",
    "runtime_view",
    "triton",
]


@pytest.mark.parametrize("old", OLD_NAMES)
def test_old_name_is_the_new_module(old: str) -> None:
    new_name = MOVED[f"mlops.providers.{old}"]
    new = importlib.import_module(new_name)
    assert importlib.import_module(f"mlops.providers.{old}") is new
    assert getattr(mlops.providers, old) is new
    assert sys.modules[f"mlops.providers.{old}"] is new
    # The module keeps its own identity: the alias does not rename it.
    assert new.__name__ == new_name
    assert new.__spec__ is not None and new.__spec__.name == new_name


def test_from_import_forms() -> None:
    from mlops.providers import local_runtime, mlflow_registry  # type: ignore[attr-defined]
    from mlops.providers.engine import runtime
    from mlops.providers.mlflow import registry

    assert local_runtime is runtime
    assert mlflow_registry is registry
    assert local_runtime.LocalRuntime is runtime.LocalRuntime


def test_kubernetes_package_exports_what_the_module_did() -> None:
    from mlops.providers import kubernetes
    from mlops.providers.kubernetes import runtime

    for name in (
        "KubernetesRuntime",
        "options_for",
        "render_manifests",
        "render_workspace",
        "to_yaml",
        "version_input",
        "RETIRED_ENV",
    ):
        assert getattr(kubernetes, name) is getattr(runtime, name)


def test_unknown_name_still_fails() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mlops.providers.no_such_backend")


def test_importing_providers_is_lazy() -> None:
    code = (
        "import sys\n"
        "import mlops.providers\n"
        "heavy = [m for m in ('mlflow', 'kubernetes', 'mlops.providers.mlflow.registry',"
        " 'mlops.providers.engine.runtime') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "import mlops.providers.mlflow_tags\n"
        "assert 'mlops.providers.mlflow.tags' in sys.modules\n"
        "assert 'mlflow' not in sys.modules, 'mlflow_tags pulled in mlflow'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
