"""mlops.yaml `kubernetes` keys: they reach the rendered objects, and bad values are
config errors that name the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlops import errors, workspace
from mlops.providers.kubernetes import manifests as m
from mlops.providers.kubernetes import runtime as k8s
from mlops.spec import load
from tests.k8s import conftest as c

DIGEST = "sha256:" + "ab" * 32
CONFIG = f"""\
target: kubernetes
registry_uri: http://127.0.0.1:5000
kubernetes:
  namespace: serving
  gateway_ref: infra/public
  engine: mlops
  image: registry.example.com/ml/mlops-engine@{DIGEST}
  fetch_image: registry.example.com/ml/mlflow:2.19
  registry_uri: https://mlflow.internal.example.com
  hostnames: [scoring.example.com, "*.models.example.com"]
  accelerator_label: cloud.google.com/gke-accelerator
"""


def _options(root: Path, text: str, **kwargs: Any) -> m.Options:
    (root / "mlops.yaml").write_text(text)
    return k8s.options_for(workspace.open_workspace(root), env={}, **kwargs)


def _by_kind(objects: list[m.Obj]) -> dict[str, m.Obj]:
    return {obj["kind"]: obj for obj in objects}


def test_config_keys_reach_the_rendered_objects(tmp_path: Path) -> None:
    options = _options(tmp_path, CONFIG)
    d = c.gpu_spec()
    objects = _by_kind(k8s.render_manifests(d, c.registered(d), options))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert objects["Deployment"]["metadata"]["namespace"] == "serving"
    assert pod["containers"][0]["image"] == f"registry.example.com/ml/mlops-engine@{DIGEST}"
    (fetch,) = pod["initContainers"]
    assert fetch["image"] == "registry.example.com/ml/mlflow:2.19"
    # The pods' registry, not the workspace's local one, is what the fetch step talks to.
    assert "https://mlflow.internal.example.com" in str(fetch)
    assert "127.0.0.1" not in str(fetch)
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-t4"}
    route = objects["HTTPRoute"]["spec"]
    assert route["hostnames"] == ["scoring.example.com", "*.models.example.com"]
    parent = route["parentRefs"][0]
    assert (parent["name"], parent["namespace"]) == ("public", "infra")


def test_defaults_and_engine_override(tmp_path: Path) -> None:
    options = _options(tmp_path, "target: kubernetes\n")
    assert options == m.Options()
    triton = _options(tmp_path, "kubernetes: {image: 'nvcr.io/nvidia/tritonserver:25.01-py3'}\n")
    assert triton.image == "nvcr.io/nvidia/tritonserver:25.01-py3"
    # `mlops manifests --engine mlops` wins over the key; the Triton image is not reused.
    engine = _options(tmp_path, "kubernetes: {engine: triton}\n", engine="mlops")
    assert (engine.engine, engine.image) == ("mlops", m.Options().engine_image)
    # Without kubernetes.registry_uri, pods use the top-level registry.
    shared = _options(tmp_path, "registry_uri: http://mlflow.shared:5000\n")
    assert shared.registry_uri == "http://mlflow.shared:5000"


def test_retired_environment_variables_are_refused(tmp_path: Path) -> None:
    (tmp_path / "mlops.yaml").write_text("target: kubernetes\n")
    ws = workspace.open_workspace(tmp_path)
    with pytest.raises(errors.ConfigError, match=r"kubernetes\.engine in mlops\.yaml"):
        k8s.options_for(ws, env={"MLOPS_K8S_ENGINE": "mlops"})
    with pytest.raises(errors.ConfigError, match="'triton' or 'mlops'"):
        k8s.options_for(ws, engine="torchserve", env={})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("engine: torchserve", "triton"),
        ("image: 'Not An Image!'", "not an image reference"),
        ("fetch_image: 'ghcr.io/mlflow/mlflow:'", "not an image reference"),
        ("registry_uri: sqlite:///tmp/mlflow.db", "http(s)://"),
        ("registry_uri: 'http://'", "http(s)://"),
        ("hostnames: ['bad host.example.com']", "not a hostname"),
        ("hostnames: ['a.*.example.com']", "not a hostname"),
        ("accelerator_label: 'gpu model'", "not a label key"),
        ("engin: mlops", "engin"),
    ],
)
def test_bad_values_are_config_errors_with_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "mlops.yaml"
    path.write_text(f"target: kubernetes\nkubernetes:\n  namespace: serving\n  {line}\n")
    with pytest.raises(errors.MlopsError) as caught:
        load.load_workspace_config(path)
    text = str(caught.value)
    assert f"{path}:4" in text and message in text, text
