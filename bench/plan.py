"""Benchmark `mlops plan` on 1,000 and 5,000 models against a real MLflow sqlite registry.

    python bench/plan.py                 # sizes 1000 and 5000 (registries cached in bench/.cache)
    python bench/plan.py --sizes 50 200  # quick run

Set-up (once, cached): train the example model, register the first models through the
registry provider (each with `stable` = 1.0.0; the rate is measured and printed), then, because
registering thousands through MLflow takes tens of minutes here, copy the MLflow rows of one
of those registrations (registered model, version, tags, aliases) under the other names in one
sqlite transaction: the registry still holds N real MLflow entries, read back through MLflow.
N spec files are written, 10% of which move to 1.1.0 (a canary rollout), the rest
unchanged. The engine is not started, so every unchanged model plans a reload of its stable
version; that is the heavier plan.

Measured: a fresh `python` process per run doing what `mlops plan` does (imports, load specs,
one batched refresh per provider, diff, text rendering); times are from the first line of that
process ("after interpreter start") and, separately, the whole process wall time. The registry
is read without MLflow's client (`mlflow_reader`), as `mlops plan` does; with
`MLOPS_REGISTRY_READER=mlflow` through the client, whose start-up is then the `connect` stage.
`bench/commands.py` times the whole commands (status, registry list, plan) side by side.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"
SPEC = ROOT / "specs" / "fraud-scorer.yaml"
BUMPED_EVERY = 10  # one model in ten gets a new version (a canary rollout)
REGISTERED = 50  # models registered through the provider; the rest are copies of their rows


def measure(ws: str) -> None:
    """Child process: the stages of `mlops plan`, timed from the first line of the process.
    Each stage records wall seconds and, under `cpu_<stage>`, this process's CPU seconds
    (steadier than wall time on a shared, loaded machine)."""
    stages: dict[str, float] = {}
    clock = [time.perf_counter(), time.process_time()]

    def stage(name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        stages[name], stages[f"cpu_{name}"] = wall - clock[0], cpu - clock[1]
        clock[:] = [wall, cpu]

    from mlops import api
    from mlops import workspace as ws_mod
    from mlops.plan import diff
    from mlops.providers import factory
    from mlops.render import base
    from mlops.spec import load
    from mlops.state import applied, refresh

    workspace = ws_mod.open_workspace(ws)
    registry = factory.registry(workspace)
    runtime = factory.runtime(workspace)
    stage("imports")
    if os.environ.get("MLOPS_REGISTRY_READER") == "mlflow":
        # Reads through MLflow's client: its import and SQLAlchemy store start-up, a fixed
        # cost measured on its own so the per-model part of `refresh` shows.
        getattr(registry, "initialise", lambda: None)()
    stage("connect")
    loaded = load.load_specs([workspace.root / "specs"], workspace.root)
    desired = [api._desired(item, workspace.root) for item in loaded]
    stage("load_specs")
    last = applied.read(applied.path_in(workspace.state_dir))
    names = sorted({item.name for item in loaded} | set(last))
    live = refresh.refresh(registry, runtime, names, last)
    stage("refresh")
    plan = diff.diff(
        desired,
        live,
        workspace=str(workspace.root),
        created_at="2026-01-01T00:00:00+00:00",
        spec_digest=load.spec_digest(loaded),
    )
    stage("diff")
    text = base.view("text").render(plan)
    stage("render")
    stages["total"] = time.perf_counter() - T0
    stages["cpu_total"] = time.process_time()
    assert len(plan.models) == len(loaded) and not plan.errors, plan.errors[:3]
    document = {
        "stages": stages,
        "actions": len(plan.actions),
        "bytes": len(text),
        "registry_models": len(live.registry),
    }
    print(json.dumps(document))


def build(n: int) -> Path:
    """A cached workspace with N registered models and N specs; reuses a smaller one."""
    target = CACHE / f"plan-{n}"
    if (target / "ready.json").exists():
        return target
    smaller = sorted(
        (p for p in CACHE.glob("plan-*") if (p / "ready.json").exists()),
        key=lambda p: int(p.name.split("-")[1]),
    )
    smaller = [p for p in smaller if int(p.name.split("-")[1]) < n]
    if target.exists():
        shutil.rmtree(target)
    start = time.perf_counter()
    done, spent = 0, 0.0
    if smaller:
        base = smaller[-1]
        shutil.copytree(base, target)
        (target / "ready.json").unlink()
        info = json.loads((base / "ready.json").read_text())
        done, spent = info["models"], info["setup_seconds"]
        # Registry artifact paths inside the copied db point at the copied workspace's own
        # artifact root only by relative layout; re-rooting keeps reads inside `target`.
    else:
        target.mkdir(parents=True)
        (target / "mlops.yaml").write_text("target: local\n")
        (target / "specs").mkdir()
        for version in ("1.0.0", "1.1.0"):
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "examples" / "train.py"),
                    "--version",
                    version,
                    "--out",
                    str(target),
                ],
                check=True,
                capture_output=True,
            )
    _register(target, done, n)
    seconds = spent + time.perf_counter() - start
    (target / "ready.json").write_text(json.dumps({"models": n, "setup_seconds": seconds}))
    return target


def _register(root: Path, first: int, n: int) -> None:
    import yaml

    from mlops import workspace as ws_mod
    from mlops.providers import factory
    from mlops.spec import models as spec

    template = yaml.safe_load(SPEC.read_text())
    template["spec"]["model"]["artifact"] = "../models/fraud-scorer-1.0.0.onnx"
    template["spec"]["model"].pop("validation", None)
    ws = ws_mod.open_workspace(root)
    registry = factory.registry(ws)
    artifact = root / "models" / "fraud-scorer-1.0.0.onnx"
    real = range(first, min(n, REGISTERED))
    started = time.perf_counter()
    for i in real:
        name = f"model-{i:05d}"
        template["metadata"]["name"] = name
        deployment = spec.ModelDeployment.model_validate(template)
        registry.register(deployment, artifact, None)
        registry.set_alias(name, "stable", "1.0.0")
    if len(real):
        per = (time.perf_counter() - started) / len(real)
        print(
            f"  registered {len(real)} through the provider: {per:.2f}s per model "
            f"(5,000 would take {per * 5000 / 60:.0f} min)",
            file=sys.stderr,
        )
        (root / "register-rate.json").write_text(json.dumps({"seconds_per_model": per}))
    _clone(root / ".mlops" / "mlflow.db", "model-00000", max(first, REGISTERED), n)
    for i in range(first, n):
        name = f"model-{i:05d}"
        model = dict(template["spec"]["model"])
        if i % BUMPED_EVERY == 0:
            model.update(version="1.1.0", artifact="../models/fraud-scorer-1.1.0.onnx")
        desired = {
            **template,
            "metadata": {"name": name},
            "spec": {**template["spec"], "model": model},
        }
        (root / "specs" / f"{name}.yaml").write_text(yaml.safe_dump(desired, sort_keys=False))


_CLONED_TABLES = (
    "registered_models",
    "registered_model_tags",
    "model_versions",
    "model_version_tags",
    "registered_model_aliases",
)


def _clone(db: Path, source: str, first: int, n: int) -> None:
    """Copy every registry row of `source` under the names model-FIRST..model-N-1."""
    import sqlite3

    if first >= n:
        return
    started = time.perf_counter()
    with sqlite3.connect(db) as conn:
        for table in _CLONED_TABLES:
            columns = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
            rows = conn.execute(f"SELECT * FROM {table} WHERE name = ?", (source,)).fetchall()
            at = columns.index("name")
            copies = [
                (*row[:at], f"model-{i:05d}", *row[at + 1 :])
                for i in range(first, n)
                for row in rows
            ]
            marks = ", ".join("?" * len(columns))
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", copies)
    print(
        f"  copied {n - first} registrations in {time.perf_counter() - started:.1f}s",
        file=sys.stderr,
    )


def run_child(ws: Path) -> tuple[dict[str, float], float, dict[str, int]]:
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(Path(__file__)), "--measure", str(ws)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wall = time.perf_counter() - start
    data = json.loads(out.strip().splitlines()[-1])
    return data["stages"], wall, {"actions": data["actions"], "registry": data["registry_models"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return
    results: dict[int, dict[str, float]] = {}
    for n in sorted(args.sizes):
        ws = build(n)
        setup = json.loads((ws / "ready.json").read_text())["setup_seconds"]
        runs = [run_child(ws) for _ in range(args.runs)]
        best = min(runs, key=lambda r: r[0]["total"])
        stages, _, counts = best
        walls = [r[1] for r in runs]
        results[n] = {**stages, "wall": statistics.median(walls)}
        print(
            f"\n{n} models ({counts['actions']} actions, {counts['registry']} in registry); "
            f"set-up (cached) {setup:.0f}s"
        )
        wall = {k: v for k, v in stages.items() if not k.startswith("cpu_")}
        cpu = {k[4:]: v for k, v in stages.items() if k.startswith("cpu_")}
        print(
            f"  wall, best of {args.runs}: " + ", ".join(f"{k} {v:.2f}s" for k, v in wall.items())
        )
        print("  CPU of that run:  " + ", ".join(f"{k} {v:.2f}s" for k, v in cpu.items()))
        print(f"  whole process (median, incl. interpreter start): {statistics.median(walls):.2f}s")
        print(f"  load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    sizes = sorted(results)
    if len(sizes) >= 2:
        small, large = sizes[0], sizes[-1]
        a, b = results[small], results[large]
        fixed = a["imports"]
        print(
            f"\nratio {large}/{small} models: total {b['total'] / a['total']:.2f}x, "
            f"excluding imports {(b['total'] - b['imports']) / (a['total'] - fixed):.2f}x "
            f"(linear would be {large / small:.1f}x); CPU {b['cpu_total'] / a['cpu_total']:.2f}x"
        )


if __name__ == "__main__":
    main()
