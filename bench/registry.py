"""Registry benchmark: register N model versions, then time one batched refresh of all of them
(read directly, and through MLflow's client) against the per-model reads it replaces.

    python bench/registry.py                      # 200 models x 5 versions = 1,000 versions
    python bench/registry.py --models 20 --versions 2

Everything is real: a fresh MLflow sqlite registry in a temporary workspace, a tiny ONNX model
trained with scikit-learn, and full registrations (copy, hash, signature check, artifact upload,
version + tags + semver alias). Figures go to stdout and bench/RESULTS-registry.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np

# Run as a script: the repository root on the path for tests.support's model trainer.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlops.providers.mlflow import reader as mlflow_reader
from mlops.providers.mlflow import tags
from mlops.providers.mlflow.registry import MlflowRegistry
from mlops.spec import models as spec
from tests.support import logistic_onnx

RESULTS = Path(__file__).resolve().parent / "RESULTS-registry.md"


def train(path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    path.write_bytes(logistic_onnx(x, (x[:, 0] > 0).astype(np.int64))[1])


def deployment(name: str, version: str) -> spec.ModelDeployment:
    return spec.ModelDeployment.model_validate(
        {
            "apiVersion": "mlops/v1",
            "kind": "ModelDeployment",
            "metadata": {"name": name},
            "spec": {
                "model": {
                    "version": version,
                    "artifact": "models/model.onnx",
                    "signature": {
                        "inputs": [{"name": "input", "dtype": "FP32", "shape": [-1, 4]}],
                        "outputs": [
                            {"name": "label", "dtype": "INT64", "shape": [-1]},
                            {"name": "probabilities", "dtype": "FP32", "shape": [-1, 2]},
                        ],
                    },
                    "baseline": {"metric": "accuracy", "value": 0.9, "p99_ms": 10},
                }
            },
        }
    )


T = TypeVar("T")


def timed(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    """Median wall time of `repeats` runs (at least one), and the last result."""
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=200)
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    total = args.models * args.versions

    with tempfile.TemporaryDirectory(prefix="mlops-bench-registry-") as tmp:
        ws = Path(tmp)
        (ws / "models").mkdir()
        train(ws / "models" / "model.onnx")
        registry = MlflowRegistry(
            f"sqlite:///{ws / '.mlops' / 'mlflow.db'}", ws / ".mlops" / "artifacts", workspace=ws
        )
        registry.initialise()  # creates and migrates the database outside the timings
        names = [f"model-{i:04d}" for i in range(args.models)]
        start = time.perf_counter()
        for n, name in enumerate(names):
            for v in range(args.versions):
                registry.register(deployment(name, f"1.{v}.0"), Path("models/model.onnx"), None)
            registry.set_alias(name, "stable", "1.0.0")
            if (n + 1) % max(1, args.models // 10) == 0:
                rate = (n + 1) * args.versions / (time.perf_counter() - start)
                print(f"  registered {(n + 1) * args.versions}/{total} ({rate:.1f}/s)",
                      file=sys.stderr)  # fmt: skip
        register_seconds = time.perf_counter() - start

        batched_s, batched = timed(registry.refresh, args.repeats)
        # The same batched read through MLflow's client (its start-up excluded): what the
        # fast reader (mlflow_reader) replaces for every read-only command.
        os.environ[mlflow_reader.READER_ENV] = "mlflow"
        try:
            through_client = MlflowRegistry(
                registry.tracking_uri, registry.artifact_root, workspace=ws
            )
            through_client.initialise()
            client_s, by_client = timed(through_client.refresh, args.repeats)
        finally:
            del os.environ[mlflow_reader.READER_ENV]
        assert by_client == batched

        def per_model() -> dict[str, object]:
            """What a provider without batching does: per model, its aliases and its versions."""
            found: dict[str, object] = {}
            session = registry.session
            for name in names:
                model = session.call("get model", "get_registered_model", name)
                entities = session.call(
                    "versions", "search_model_versions", f"name = '{name}'", max_results=10_000
                )
                versions = [v for v in map(tags.decode, entities) if v is not None]
                aliases = {a: str(n) for a, n in model.aliases.items()}
                found[name] = tags.build_model(name, versions, aliases)
            return found

        def per_version() -> int:
            return sum(
                registry.get_version(name, f"1.{v}.0") is not None
                for name in names
                for v in range(args.versions)
            )

        per_model_s, separate = timed(per_model, args.repeats)
        per_version_s, seen = timed(per_version, 1)
        assert isinstance(batched, dict) and batched == separate and seen == total
        assert sum(len(m.versions) for m in batched.values()) == total

    lines = [
        "# Registry benchmark",
        "",
        f"`python bench/registry.py --models {args.models} --versions {args.versions}` on "
        f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"MLflow {_mlflow_version()}, sqlite store; load average at the end "
        f"{os.getloadavg()[0]:.1f} (other work on the machine slows every figure).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| versions registered | {total} ({args.models} models x {args.versions}) |",
        f"| registration, total | {register_seconds:.1f} s |",
        f"| registration rate | {total / register_seconds:.1f} versions/s "
        f"({1000 * register_seconds / total:.0f} ms each) |",
        f"| batched refresh of everything, sqlite read directly (median of {args.repeats}) "
        f"| {batched_s * 1000:.0f} ms |",
        f"| the same through MLflow's client, its start-up excluded (median of {args.repeats}) "
        f"| {client_s * 1000:.0f} ms |",
        f"| MLflow's client / direct read | {client_s / batched_s:.1f}x |",
        f"| per-model reads (`get_registered_model` + `search_model_versions` per model) "
        f"x {args.models} (median of {args.repeats}) "
        f"| {per_model_s * 1000:.0f} ms |",
        f"| per-version reads, `get_version` x {total} | {per_version_s * 1000:.0f} ms |",
        f"| per-model / batched, both through MLflow's client | {per_model_s / client_s:.1f}x |",
        f"| per-version / batched, both read directly | {per_version_s / batched_s:.1f}x |",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    RESULTS.write_text(report, encoding="utf-8")


def _mlflow_version() -> str:
    import mlflow

    return str(mlflow.__version__)


if __name__ == "__main__":
    main()
