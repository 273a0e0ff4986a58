"""Fixtures for spec tests: a small workspace on disk and an in-process `mlops` runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import support
from tests.support import Runner

# A valid spec whose line numbers the bad-spec table refers to (line 1 is apiVersion).
GOOD = """\
apiVersion: mlops/v1
kind: ModelDeployment
metadata:
  name: fraud-scorer
spec:
  model:
    version: 1.0.0
    artifact: ../models/fraud-scorer-1.0.0.onnx
    format: onnx
    signature:
      inputs:
        - {name: input, dtype: FP32, shape: [-1, 30]}
      outputs:
        - {name: label, dtype: INT64, shape: [-1]}
        - {name: probabilities, dtype: FP32, shape: [-1, 2]}
    baseline: {metric: accuracy, value: 0.953, p99_ms: 15}
    validation: {data: ../data/fraud-scorer-val.npz, tolerance: 0.005}
  serving:
    replicas: {min: 1, max: 2}
    batching: {max_batch_size: 32, max_queue_delay_ms: 5}
  rollout:
    strategy: canary
    steps:
      - {weight: 10, hold: 10s}
      - {weight: 50, hold: 10s}
      - {weight: 100}
    interval: 2s
    gates:
      - {metric: error_rate, max: 0.01}
      - {metric: latency_p99, max_increase: 0.5}
"""


def good(name: str = "fraud-scorer", version: str = "1.0.0") -> str:
    return GOOD.replace("name: fraud-scorer", f"name: {name}").replace(
        "version: 1.0.0", f"version: {version}"
    )


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace (tmp/ws) with mlops.yaml, an artifact and validation data; cwd is the root.

    tmp/outside holds a file outside the workspace for escape tests.
    """
    root = tmp_path / "ws"
    for sub in ("specs", "models", "data"):
        (root / sub).mkdir(parents=True)
    (root / "mlops.yaml").write_text("target: local\nmetrics: builtin\n")
    (root / "models" / "fraud-scorer-1.0.0.onnx").write_bytes(b"onnx-bytes")
    (root / "data" / "fraud-scorer-val.npz").write_bytes(b"npz-bytes")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.onnx").write_bytes(b"secret")
    monkeypatch.chdir(root)
    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    return root


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    """Run the real CLI entry point (`mlops.cli.main`) in-process and capture its output."""

    return support.cli_runner(capsys)


def snapshot(root: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under root with (is_dir, size, mtime_ns): equal before and after = no writes."""
    entries: dict[str, tuple[bool, int, int]] = {}
    for base, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(base) / name
            info = path.lstat()
            entries[str(path.relative_to(root))] = (path.is_dir(), info.st_size, info.st_mtime_ns)
    return entries
