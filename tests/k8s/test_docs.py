"""docs/kubernetes.md's examples are real: its mlops.yaml loads and its Gateway passes the
official Gateway API CRD schema."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mlops.spec import load
from tests.k8s import conftest as c

DOC = c.ROOT / "docs" / "kubernetes.md"


def blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_workspace_example_loads(tmp_path: Path) -> None:
    (text,) = [b for b in blocks() if b.startswith("target: kubernetes")]
    path = tmp_path / "mlops.yaml"
    path.write_text(text)
    config = load.load_workspace_config(path)
    assert config.target == "kubernetes" and config.kubernetes.engine == "mlops"
    assert config.images is not None


def test_the_gateway_example_passes_the_crd_schema() -> None:
    (text,) = [b for b in blocks() if "kind: Gateway\n" in b]
    gateway = yaml.safe_load(text)
    assert c.crd_problems(gateway) == []
