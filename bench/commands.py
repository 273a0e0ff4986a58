"""Wall time of the everyday commands: `status`, `registry list`, `registry show` and `plan` on a
one-model and a 1,000-model workspace, as a user runs them (a fresh `python -m mlops` process,
interpreter start included).

    python bench/commands.py                  # sizes 1 and 1000, 7 runs each
    python bench/commands.py --runs 3 --sizes 1
    python bench/commands.py --before 6c59e96 # also the code of that commit, side by side

Workspaces come from bench/plan.py (cached in bench/.cache): a real MLflow sqlite registry
with N models (each `stable` = 1.0.0) and N specs, 10% of which move to 1.1.0; the engine is
not running. Each command runs in each mode in turn, round by round, so load on a shared
machine hits every mode alike:

- `fast`: the current code (registry reads without MLflow's client, `mlflow_reader`);
- `mlflow-client`: the current code with `MLOPS_REGISTRY_READER=mlflow` (reads through MLflow's
  client, which imports mlflow and starts its SQLAlchemy store);
- `before`: with `--before REV`, the code of that commit (a git worktree in bench/.cache).

Reported per command and mode: median and minimum wall seconds, median CPU seconds (user +
system of the process: steadier than wall time on a loaded machine). The table goes to stdout
and bench/RESULTS-commands.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS-commands.md"
GOALS = {  # seconds, from the issue: small workspace < 1.5 s, plan of 1,000 models < 2 s
    (1, "status"): 1.5,
    (1, "registry list"): 1.5,
    (1, "registry show"): 1.5,
    (1, "plan"): 1.5,
    (1000, "plan"): 2.0,
}

sys.path.insert(0, str(HERE))
import plan as plan_bench  # noqa: E402  (the workspace builder of bench/plan.py)

COMMANDS = {
    "status": ["status"],
    "registry list": ["registry", "list"],
    "registry show": ["registry", "show", "model-00000"],
    "plan": ["plan"],
}


def run_once(ws: Path, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one `python -m mlops -C WS ARGS` process; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mlops", "-C", str(ws), *args],
        env=env,
        cwd=env.get("PYTHONPATH", ROOT),  # `-m` puts the current directory first on the path
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"mlops {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def modes(before: str | None) -> dict[str, dict[str, str]]:
    base = {k: v for k, v in os.environ.items() if k not in ("MLOPS_REGISTRY_READER",)}
    found = {
        "fast": dict(base),
        "mlflow-client": {**base, "MLOPS_REGISTRY_READER": "mlflow"},
    }
    if before is not None:
        tree = worktree(before)
        found[f"before ({before})"] = {**base, "PYTHONPATH": str(tree)}
    return found


def worktree(rev: str) -> Path:
    """A checkout of `rev` (cached); `python -m mlops` imports it first via PYTHONPATH."""
    target = HERE / ".cache" / f"rev-{rev}"
    if not target.exists():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(target), rev],
            check=True,
            capture_output=True,
        )
    return target


def same_answers(ws: Path, found: dict[str, dict[str, str]]) -> None:
    """Every mode reads the same registry: their JSON documents must be identical."""
    outputs = {
        mode: subprocess.run(
            [sys.executable, "-m", "mlops", "-C", str(ws), "registry", "list", "--format", "json"],
            env=env,
            cwd=env.get("PYTHONPATH", ROOT),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for mode, env in found.items()
    }
    if len(set(outputs.values())) != 1:
        raise SystemExit(f"modes disagree on `registry list` in {ws}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 1000])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--before", help="a git revision to measure side by side")
    args = parser.parse_args()
    found = modes(args.before)
    rows: list[tuple[int, str, str, list[float], list[float]]] = []
    loads = []
    for size in sorted(args.sizes):
        ws = plan_bench.build(size)
        same_answers(ws, found)
        for name, cmd in COMMANDS.items():
            samples: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in found}
            run_once(ws, cmd, found["fast"])  # warm the page cache once, not measured
            for _ in range(args.runs):
                for mode, env in found.items():
                    wall, cpu = run_once(ws, cmd, env)
                    samples[mode][0].append(wall)
                    samples[mode][1].append(cpu)
                loads.append(os.getloadavg()[0])
            for mode, (walls, cpus) in samples.items():
                rows.append((size, name, mode, walls, cpus))
                print(
                    f"{size:>5} {name:<14} {mode:<24} median {statistics.median(walls):6.2f} s"
                    f"  min {min(walls):6.2f} s  CPU {statistics.median(cpus):5.2f} s",
                    file=sys.stderr,
                )
    report = render(rows, args, loads)
    print(report)
    RESULTS.write_text(report, encoding="utf-8")


def render(
    rows: list[tuple[int, str, str, list[float], list[float]]],
    args: argparse.Namespace,
    loads: list[float],
) -> str:
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# Everyday commands: wall time",
        "",
        f"`python bench/commands.py --runs {args.runs} --sizes "
        f"{' '.join(map(str, args.sizes))}"
        + (f" --before {args.before}" if args.before else "")
        + f"` at {commit}, {time.strftime('%Y-%m-%d')}, on {platform.platform()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; load average "
        f"{min(loads):.1f}-{max(loads):.1f} while measuring. A fresh process per run (interpreter "
        "start included), the engine not running, MLflow registry on sqlite.",
        "",
        "| models | command | reads through | wall, median | wall, min | CPU, median | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, name, mode, walls, cpus in rows:
        goal = GOALS.get((size, name))
        verdict = ""
        if goal is not None and mode == "fast":
            verdict = f"< {goal:g} s: {'pass' if statistics.median(walls) < goal else 'miss'}"
        lines.append(
            f"| {size:,} | `{name}` | {mode} | {statistics.median(walls):.2f} s "
            f"| {min(walls):.2f} s | {statistics.median(cpus):.2f} s | {verdict} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
