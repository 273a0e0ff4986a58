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
  engine: triton
  image: registry.example.com/nvidia/tritonserver@{DIGEST}
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
    assert pod["containers"][0]["image"] == f"registry.example.com/nvidia/tritonserver@{DIGEST}"
    (stage,) = pod["initContainers"]
    assert stage["image"] == c.IMAGE  # the version's own image carries the model
    # The workspace's registry is never something pods talk to.
    assert "127.0.0.1" not in str(objects)
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-t4"}
    route = objects["HTTPRoute"]["spec"]
    assert route["hostnames"] == ["scoring.example.com", "*.models.example.com"]
    parent = route["parentRefs"][0]
    assert (parent["name"], parent["namespace"]) == ("public", "infra")


def test_defaults_and_engine_override(tmp_path: Path) -> None:
    options = _options(tmp_path, "target: kubernetes\n")
    assert options == m.Options() and options.engine == "mlops"
    triton = f"kubernetes: {{engine: triton, image: 'nvcr.io/nvidia/tritonserver@{DIGEST}'}}\n"
    assert _options(tmp_path, triton).triton_image == f"nvcr.io/nvidia/tritonserver@{DIGEST}"
    # `mlops manifests --engine mlops` wins over the key; the Triton image is then unused.
    engine = _options(tmp_path, triton, engine="mlops")
    assert (engine.engine, engine.triton_image) == ("mlops", None)
    # Triton without its image (by digest) is one clear error.
    with pytest.raises(errors.ConfigError, match=r"needs kubernetes\.image"):
        _options(tmp_path, "kubernetes: {engine: triton}\n")
    # KEDA's Prometheus trigger reads the Prometheus the gates read.
    url = _options(tmp_path, "metrics: http://prom.example.com:9090\n").prometheus_url
    assert url == "http://prom.example.com:9090"


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
        ("image: 'nvcr.io/nvidia/tritonserver:24.12-py3'", "pinned by digest"),
        ("fetch_image: 'ghcr.io/mlflow/mlflow:2.19'", "no longer used"),
        ("registry_uri: http://mlflow:5000", "images:"),
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
