"""Rollout timings on the real local target, through the CLI.

1. Breach to weight 0: a canary that turns bad in the middle of a hold (load starts sending
   rows it fails on at a random moment). Measured from the first bad request to the moment
   every engine worker's routing table shows the canary at weight 0. Goal: within one gate
   interval.
2. Promotion overhead: wall time of a healthy canary's rollout (first traffic change to the
   promotion, from the journal) against the sum of its holds. Goal: <= 1.2x.

  python bench/rollout.py --trials 3 --interval 2 --hold 10 --out bench/RESULTS-rollout.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mlops import loadgen  # noqa: E402
from tests.e2e.conftest import NAME, E2EWorkspace, free_port_block  # noqa: E402


def prepare(root: Path, metrics: str) -> E2EWorkspace:
    train = [sys.executable, str(REPO / "examples" / "train.py"), "--out", str(root)]
    for version in ("1.0.0", "1.1.0"):
        subprocess.run([*train, "--version", version], check=True, capture_output=True)
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "model_variants.py"),
            "erroring",
            str(root / "models" / f"{NAME}-1.1.0.onnx"),
            str(root / "models" / f"{NAME}-1.1.0-erroring.onnx"),
        ],
        check=True,
        capture_output=True,
    )
    ws = E2EWorkspace(root=root, port=free_port_block(), models=root)
    ws.config(metrics=metrics)
    ws.deploy_v1()
    return ws


def journal_span(ws: E2EWorkspace) -> float:
    """Seconds from the first set_traffic intent to the last promote outcome of the newest run."""
    pointer = json.loads((ws.root / ".mlops" / "journal" / "current.json").read_text())
    lines = (ws.root / ".mlops" / "journal" / f"{pointer['run_id']}.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    first = next(
        e for e in events if e["event"] == "intent" and "set_traffic" in e.get("action", "")
    )
    last = [e for e in events if e["event"] == "done" and "promote" in e.get("action", "")][-1]
    start = datetime.fromisoformat(first["at"])
    end = datetime.fromisoformat(last["at"])
    return (end - start).total_seconds()


def promotion(ws: E2EWorkspace, hold: float, interval: float) -> dict[str, float]:
    ws.spec("1.1.0", steps=[(10, hold), (50, hold), (100, 0.0)], interval=interval)
    plan = ws.plan("plans/promote.json")
    stop = threading.Event()
    load = threading.Thread(
        target=loadgen.run,
        args=(ws.url(), NAME),
        kwargs={"rate": 150.0, "duration": 600.0, "stop": stop, "workers": 8},
        daemon=True,
    )
    load.start()
    started = time.monotonic()
    try:
        ws.mlops("apply", plan, timeout=600)
    finally:
        stop.set()
        load.join(30)
    wall = time.monotonic() - started
    span = journal_span(ws)
    return {"holds": 2 * hold, "rollout_s": span, "ratio": span / (2 * hold), "cli_wall_s": wall}


def canary_weight(client: httpx.Client, urls: list[str], canary: str) -> int | None:
    weights = []
    for url in urls:
        try:
            table = client.get(f"{url}/v2/routing").json()
        except (httpx.HTTPError, ValueError):
            return None
        model = table.get("models", {}).get(NAME) or {}
        weights.append(int(model.get("weights", {}).get(canary, 0)))
    return max(weights) if weights else None


def breach(ws: E2EWorkspace, semver: str, interval: float) -> float:
    ws.spec(
        semver,
        artifact=f"{NAME}-1.1.0-erroring.onnx",
        accuracy_of="1.1.0",
        steps=[(25, 120.0), (100, 0.0)],
        interval=interval,
        gates="[{metric: error_rate, max: 0.01}]",
    )
    stop = threading.Event()
    clean = threading.Thread(
        target=loadgen.run,
        args=(ws.url(), NAME),
        kwargs={"rate": 120.0, "duration": 600.0, "stop": stop, "workers": 8},
        daemon=True,
    )
    clean.start()
    apply = ws.start("apply", "--auto-approve", "specs/")
    record = ws.root / ".mlops" / "rollouts" / f"{NAME}.json"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if record.is_file():
                data = json.loads(record.read_text())
                rounds = [g for g in data.get("gates", []) if g.get("run_id") == data.get("run_id")]
                if (data.get("step") or {}).get("weight") == 25 and rounds:
                    break  # holding at 25% and measured at least once in this run
            time.sleep(0.05)
        time.sleep(random.uniform(0.0, interval))  # the breach lands anywhere in an interval
        urls = ws.admin_urls()
        poison = threading.Thread(
            target=loadgen.run,
            args=(ws.url(), NAME),
            kwargs={"rate": 40.0, "duration": 60.0, "stop": stop, "poison_every": 1, "workers": 4},
            daemon=True,
        )
        breached = time.monotonic()
        poison.start()
        with httpx.Client(timeout=1.0, headers=ws.admin_headers()) as client:
            while time.monotonic() - breached < 60:
                if canary_weight(client, urls, semver) == 0:
                    return time.monotonic() - breached
                time.sleep(0.01)
        apply.kill()
        output = apply.communicate(timeout=30)[0]
        raise RuntimeError(f"the canary was not rolled back within 60 s; urls {urls}\n{output}")
    finally:
        stop.set()
        apply.wait(120)
        clean.join(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--metrics", default="builtin", choices=["builtin", "prometheus"])
    parser.add_argument("--out", type=Path, default=None, help="write a markdown report here")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mlops-bench-rollout-"))
    ws = prepare(root, args.metrics)
    try:
        promoted = promotion(ws, args.hold, args.interval)
        print(f"promotion: {promoted}")
        times = []
        for trial in range(args.trials):
            seconds = breach(ws, f"1.2.{trial}", args.interval)
            times.append(seconds)
            print(
                f"breach -> weight 0, trial {trial + 1}: {seconds:.2f}s (interval {args.interval}s)"
            )
    finally:
        ws.down()
        shutil.rmtree(root, ignore_errors=True)
    report = render(args, promoted, times)
    print(report)
    if args.out:
        args.out.write_text(report)
    return 0


def render(args: argparse.Namespace, promoted: dict[str, float], times: list[float]) -> str:
    cpus = os.cpu_count()
    worst = max(times)
    lines = [
        "# Rollout benchmark",
        "",
        f"`python bench/rollout.py --trials {args.trials} --interval {args.interval:g} "
        f"--hold {args.hold:g} --metrics {args.metrics}` on {platform.platform()}, {cpus} CPUs, "
        f"{datetime.now(UTC):%Y-%m-%d}. Engine with 2 workers, load from `mlops.loadgen`.",
        "",
        "| measure | result | goal |",
        "|---|---|---|",
        f"| breach -> canary weight 0 (worst of {len(times)}) | {worst:.2f} s "
        f"({', '.join(f'{t:.2f}' for t in times)}) | <= one interval ({args.interval:g} s) |",
        f"| promotion: first traffic change -> promoted | {promoted['rollout_s']:.2f} s for "
        f"{promoted['holds']:g} s of holds = {promoted['ratio']:.3f}x | <= 1.2x |",
        f"| `mlops apply` wall time (CLI start, checks, rollout, retire) | "
        f"{promoted['cli_wall_s']:.1f} s | - |",
        "",
        "Breach: the canary (an erroring variant) is healthy until load starts sending rows it",
        "fails on, at a random moment of an interval; the time runs until every worker's routing",
        "table shows it at weight 0. Promotion: two holds with gates every interval, from the",
        "journal's first set_traffic intent to the promote outcome.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
