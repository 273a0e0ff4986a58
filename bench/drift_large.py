"""`mlops drift` over a large live data file: 1,000,000 rows x 30 features (issue 14).

    .venv/bin/python bench/drift_large.py                 # 1,000,000 rows, about a minute
    .venv/bin/python bench/drift_large.py --rows 200000   # smaller

Builds a workspace with a real MLflow (sqlite) registry and the tiny 30-feature model of
engine_support registered with training statistics of its validation data, writes the live
data (.npz, FP32, three features shifted by 3 sigma), then runs the real CLI
(`mlops drift NAME --data FILE --format json`, and once more with `--report` for the HTML
with plots) as child processes and reports, per run, the wall time and the child's peak
resident memory (ru_maxrss from wait4). The baseline is the same CLI on 1,000 rows, which
measures what the interpreter and its imports take before any data is read.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MLOPS = ROOT / ".venv" / "bin" / "mlops"
RESULTS = ROOT / "bench" / "results" / "drift_large.json"
FEATURES = 30
SHIFTED = (0, 7, 19)

SPEC = """\
apiVersion: mlops/v1
kind: ModelDeployment
metadata: {name: tiny}
spec:
  model:
    version: 1.0.0
    artifact: ../models/tiny.onnx
    signature:
      inputs: [{name: input, dtype: FP32, shape: [-1, 30]}]
      outputs:
        - {name: label, dtype: INT64, shape: [-1]}
        - {name: probabilities, dtype: FP32, shape: [-1, 2]}
    baseline: {metric: accuracy, value: 0.5, p99_ms: 50}
    validation: {data: ../data/val.npz}
"""


def workspace(root: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from engine_support import models

    from mlops import workspace as ws_module
    from mlops.providers import factory
    from mlops.spec import load

    for sub in ("specs", "models", "data"):
        (root / sub).mkdir(parents=True)
    (root / "mlops.yaml").write_text("target: local\n")
    models.tiny_classifier(root / "models" / "tiny.onnx")
    x = np.random.default_rng(0).standard_normal((5_000, FEATURES)).astype(np.float32)
    np.savez(root / "data" / "val.npz", input=x, labels=(x[:, 0] > 0).astype(np.int64))
    (root / "specs" / "tiny.yaml").write_text(SPEC)
    (item,) = load.load_specs([root / "specs"], root)
    assert item.artifact_path is not None
    registry = factory.registry(ws_module.open_workspace(root))
    registry.register(item.deployment, item.artifact_path, item.validation_path)
    registry.set_alias("tiny", "stable", "1.0.0")


def live_file(path: Path, rows: int) -> int:
    x = np.random.default_rng(1).standard_normal((rows, FEATURES)).astype(np.float32)
    x[:, list(SHIFTED)] += 3.0
    np.savez(path, input=x)
    return path.stat().st_size


def measure(root: Path, *args: str) -> dict[str, Any]:
    """One `mlops drift` child: wall seconds, peak RSS (MiB), exit code, JSON when asked."""
    argv = [str(MLOPS), "-C", str(root), "drift", "tiny", *args]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)  # reaped here: its own rusage
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode not in (0, 2):
        raise RuntimeError(f"mlops drift failed ({process.returncode}): {stderr.decode()[-2000:]}")
    doc = json.loads(stdout) if "--format" in args else None
    return {
        "argv": " ".join(["mlops", "drift", "tiny", *args]),
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "exit_code": process.returncode,
        "drifted": doc["drifted"] if doc else None,
    }


def prepare(root: Path, rows: int) -> None:
    """Workspace and data files, in a child process: Linux keeps a process's peak RSS across
    exec, so the children measured below must be forked from a small parent."""
    workspace(root)
    sizes = {
        "small": live_file(root / "data" / "small.npz", 1_000),
        "large": live_file(root / "data" / "live.npz", rows),
    }
    (root / "sizes.json").write_text(json.dumps(sizes))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--prepare", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.prepare is not None:
        prepare(args.prepare, args.rows)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        root = Path(tmp) / "ws"
        command = [sys.executable, __file__, "--prepare", str(root), "--rows", str(args.rows)]
        subprocess.run(command, check=True)
        sizes = json.loads((root / "sizes.json").read_text())
        as_json = ("--format", "json")
        runs = [
            (
                "1,000 rows (baseline)",
                sizes["small"],
                measure(root, "--data", "data/small.npz", *as_json),
            ),
            (
                f"{args.rows:,} rows",
                sizes["large"],
                measure(root, "--data", "data/live.npz", *as_json),
            ),
            (
                f"{args.rows:,} rows + HTML report",
                sizes["large"],
                measure(root, "--data", "data/live.npz", "--report", "drift.html"),
            ),
        ]
    lines = [
        f"| run ({FEATURES} features, FP32 .npz) | file MiB | wall s | peak RSS MiB | drifted |",
        "|---|---:|---:|---:|---|",
    ]
    for label, size, run in runs:
        drifted = ", ".join(run["drifted"]) if run["drifted"] is not None else "(exit 2)"
        lines.append(
            f"| {label} | {size / 2**20:.1f} | {run['seconds']:.2f} | {run['peak_rss_mib']:.0f} "
            f"| {drifted} |"
        )
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": args.rows, "runs": [r for _, _, r in runs]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
