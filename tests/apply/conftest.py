"""Set-up shared by the apply tests that run against the real local target (MLflow on sqlite,
the engine), in process through `mlops.api`: trained models, a registry to copy, a serving
workspace and the spec they deploy. Import helpers as `from tests.apply import conftest`."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops import api
from mlops import workspace as ws_mod
from mlops.apply import target as target_
from mlops.plan import types as t
from mlops.providers import factory

REPO = Path(__file__).resolve().parents[2]
NAME = "fraud-scorer"
BROKEN = "1.2.0"  # trained on inverted labels: fails conformance against any real baseline


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spec(
    version: str,
    *,
    name: str = NAME,
    shadow: str = "",
    value: float,
    keep: str = "0s",
    artifact: str | None = None,
    gates: str | None = None,
    min_requests: int | None = None,
    batching: str | None = None,
    replicas: int = 1,
) -> str:
    """A canary spec: 25% held 1s, then 100%. `gates`/`min_requests`/`batching` are added
    only when given (the rollout's defaults otherwise)."""
    serving = f"    replicas: {{min: {replicas}, max: {replicas}}}\n"
    if batching is not None:
        serving += f"    batching: {batching}\n"
    rollout = ""
    if gates is not None:
        rollout += f"    gates: {gates}\n"
    if min_requests is not None:
        rollout += f"    min_requests: {min_requests}\n"
    return f"""apiVersion: mlops/v1
kind: ModelDeployment
metadata: {{name: {name}}}
spec:
  model:
    version: {version}
    artifact: ../models/{artifact or f"{NAME}-{version}.onnx"}
    signature:
      inputs: [{{name: input, dtype: FP32, shape: [-1, 30]}}]
      outputs:
        - {{name: label, dtype: INT64, shape: [-1]}}
        - {{name: probabilities, dtype: FP32, shape: [-1, 2]}}
    baseline: {{metric: accuracy, value: {value}, p99_ms: 1000}}
    validation: {{data: ../data/{NAME}-val.npz, tolerance: 0.01}}
  serving:
{serving}  rollout:
    strategy: canary
    {shadow}
    steps: [{{weight: 25, hold: 1s}}, {{weight: 100}}]
    interval: 1s
    keep_previous: {keep}
{rollout}"""


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ and data/ with 1.0.0, 1.1.0 and the broken 1.2.0 (examples/train.py)."""
    out = tmp_path_factory.mktemp("trained")
    train = [sys.executable, str(REPO / "examples" / "train.py"), "--out", str(out)]
    for args in (["--version", "1.0.0"], ["--version", "1.1.0"]):
        subprocess.run([*train, *args], check=True, capture_output=True, timeout=300)
    broken = ["--version", BROKEN, "--variant", "broken"]
    subprocess.run([*train, *broken], check=True, capture_output=True, timeout=300)
    return out


def accuracy(trained: Path, version: str) -> float:
    return float(json.loads((trained / "models" / f"{NAME}-{version}.json").read_text())["value"])


@pytest.fixture(scope="session")
def empty_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty MLflow database to copy (creating one runs every migration)."""
    root = tmp_path_factory.mktemp("registry")
    registry = factory.registry(ws_mod.open_workspace(root))
    registry.initialise()  # type: ignore[attr-defined]
    return root / ".mlops" / "mlflow.db"


@dataclass
class Walk:
    root: Path
    trained: Path
    port: int = 0

    def target(self) -> target_.Target:
        ws = ws_mod.open_workspace(self.root)
        runtime = factory.runtime(ws)
        return target_.Target(
            ws, factory.registry(ws), runtime, lambda: factory.metrics(ws, runtime)
        )

    def write(self, name: str, text: str) -> None:
        (self.root / "specs" / f"{name}.yaml").write_text(text)

    def plan(self, *, allow_delete: bool = False) -> t.Plan:
        made = api.plan(str(self.root), [self.root / "specs"], allow_delete=allow_delete)
        assert not made.errors, made.errors
        return made


@pytest.fixture
def walk(tmp_path: Path, trained: Path, empty_registry: Path) -> Iterator[Walk]:
    """A workspace where 1.0.0 is registered, conformant, stable and serving. (Each test has
    its own: MLflow keeps one store per database path in the process.)"""
    root = tmp_path / "ws"
    shutil.copytree(trained / "models", root / "models")
    shutil.copytree(trained / "data", root / "data")
    (root / ".mlops").mkdir()
    shutil.copy(empty_registry, root / ".mlops" / "mlflow.db")
    (root / "specs").mkdir()
    port = free_port()
    (root / "mlops.yaml").write_text(f"target: local\nserve: {{port: {port}}}\n")
    walk = Walk(root, trained, port)
    walk.write(NAME, spec("1.0.0", value=accuracy(trained, "1.0.0")))
    try:
        api.apply(None, [root / "specs"], workspace=root)
        yield walk
    finally:
        api.down(workspace=root)


def snapshot(target: target_.Target, model: str) -> dict[str, Any]:
    runtime = target.runtime
    live = runtime.refresh([model]).get(model) if runtime.reachable() else None
    registry = target.registry.refresh([model]).get(model)
    return {
        "weights": dict(live.weights) if live else {},
        "shadow": live.shadow if live else None,
        "loaded": set(live.loaded) if live else set(),
        "aliases": dict(registry.aliases) if registry else {},
    }
