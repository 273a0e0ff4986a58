"""A workspace with one model registered in a real MLflow (sqlite) registry, with training
statistics of its validation data, and an in-process `mlops` runner.

Training features are independent standard normals; `live()` draws new rows from the same
distribution, optionally with chosen columns shifted by a number of standard deviations.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlops import workspace as ws_module
from mlops.providers import factory
from mlops.spec import load
from tests import support
from tests.support import Runner

NAME = "scorer"
VERSION = "1.0.0"
FEATURES = 8
ROWS = 2_000

HOOK_SCRIPT = """\
import os, sys
with open("hook-ran.txt", "w") as out:
    out.write(os.environ["MLOPS_DRIFT_MODEL"] + " " + os.environ["MLOPS_DRIFT_VERSION"] + " ")
    out.write(os.environ["MLOPS_DRIFT_FEATURES"] + " cwd=" + os.getcwd())
print("retraining", os.environ["MLOPS_DRIFT_FEATURES"])
sys.exit(int(os.environ.get("HOOK_EXIT", "0")))
"""


def spec_text(command: str | None = None, webhook: str | None = None) -> str:
    hook = f"{{command: {command!r}}}" if command is not None else f"{{webhook: {webhook!r}}}"
    return f"""\
apiVersion: mlops/v1
kind: ModelDeployment
metadata: {{name: {NAME}}}
spec:
  model:
    version: {VERSION}
    artifact: ../models/{NAME}.onnx
    signature:
      inputs: [{{name: input, dtype: FP32, shape: [-1, {FEATURES}]}}]
      outputs:
        - {{name: label, dtype: INT64, shape: [-1]}}
        - {{name: probabilities, dtype: FP32, shape: [-1, 2]}}
    baseline: {{metric: accuracy, value: 0.9, p99_ms: 15}}
    validation: {{data: ../data/val.npz}}
  monitoring:
    drift:
      threshold_sigma: 2
      on_drift: {hook}
"""


def live(seed: int, shift: dict[int, float] | None = None, rows: int = ROWS) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(rows, FEATURES)).astype(np.float32)
    for column, sigmas in (shift or {}).items():
        x[:, column] += sigmas
    return x


def _onnx_model() -> bytes:
    x = live(1)
    return support.logistic_onnx(x, (x[:, 0] + x[:, 1] > 0).astype(np.int64))[1]


def hook_command() -> str:
    return f"{shlex.quote(sys.executable)} hook.py"


def make_registered(
    root: Path, config: str = "target: local\n", webhook: str | None = None
) -> Path:
    """specs/, models/, data/val.npz, and NAME@VERSION registered as stable; the spec's
    on_drift is hook.py, or `webhook`."""
    for sub in ("specs", "models", "data"):
        (root / sub).mkdir(parents=True)
    (root / "mlops.yaml").write_text(config)
    (root / "models" / f"{NAME}.onnx").write_bytes(_onnx_model())
    x = live(0)
    np.savez(root / "data" / "val.npz", input=x, labels=(x[:, 0] > 0).astype(np.int64))
    (root / "hook.py").write_text(HOOK_SCRIPT)
    text = spec_text(webhook=webhook) if webhook else spec_text(hook_command())
    (root / "specs" / f"{NAME}.yaml").write_text(text)
    ws = ws_module.open_workspace(root)
    (item,) = load.load_specs([root / "specs"], root)
    assert item.artifact_path is not None  # a file in the workspace, not a models:/ URI
    registry = factory.registry(ws)
    registry.register(item.deployment, item.artifact_path, item.validation_path)
    registry.set_alias(NAME, "stable", VERSION)
    return root


@pytest.fixture(scope="session")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workspace root: specs/, models/, data/val.npz, and NAME@VERSION registered as stable."""
    return make_registered(tmp_path_factory.mktemp("drift") / "ws")


@pytest.fixture
def ws(registered: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """cwd = the registered workspace; files a test leaves at the top level are removed."""
    before = set(os.listdir(registered))
    monkeypatch.chdir(registered)
    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    yield registered
    for name in set(os.listdir(registered)) - before:
        path = registered / name
        if path.is_file():
            path.unlink()


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    """The real CLI entry point (`mlops.cli.main`) in-process, with captured output."""

    return support.cli_runner(capsys)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file outside .mlops/ with (size, mtime_ns): equal before and after = no writes."""
    entries: dict[str, tuple[int, int]] = {}
    for base, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".mlops"]
        for name in files:
            info = (Path(base) / name).stat()
            entries[str(Path(base, name).relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return entries
