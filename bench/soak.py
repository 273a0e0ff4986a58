"""Soak: promote/rollback cycles under steady load for a bounded time (issue 15).

    python bench/soak.py                        # SOAK_SECONDS (default 600), then 200 crash points
    python bench/soak.py --seconds 120 --crash-points 0

A fresh workspace (the example model trained with examples/train.py, MLflow on sqlite, the
local engine with 2 workers, built-in gate metrics) serves `fraud-scorer` under a steady load
(mlops.loadgen, --rate requests/s) for the whole run, while the controller cycles through the
`mlops` CLI: a canary 1.0.0 <-> 1.1.0 promoted through 25% -> 50% -> 100% with gated holds,
and every third cycle a canary (a new version of the same model) paused at 25% and rolled
back with `mlops rollback`. Nothing is poisoned: every request should succeed.

Reported (stdout, bench/results/soak.json, bench/RESULTS-soak.md):
- failed requests / sent (goal: 0);
- the engine's memory (RSS of the supervisor and its workers, summed) after the first cycle
  and at the end, and the growth (goal: < 5%); its file descriptors and threads, same times;
- the controller's peak RSS (each `mlops apply` is a process: its ru_maxrss from wait4) in
  the first and the last cycles, and the growth;
- then `MLOPS_CRASH_POINTS=N pytest tests/e2e/test_crash_points.py` (N = --crash-points,
  env SOAK_CRASH_POINTS, default 200): passed or not, the seed, the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import NAME, E2EWorkspace, Load, free_port  # noqa: E402

RESULTS_JSON = HERE / "results" / "soak.json"
RESULTS_MD = HERE / "RESULTS-soak.md"
MAX_SECONDS = 24 * 3600
MAX_POINTS = 10_000


def _bounded_int(text: str, name: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SystemExit(f"{name}: not an integer: {text[:40]!r}") from None
    if not low <= value <= high:
        raise SystemExit(f"{name}: {value} is outside {low}..{high}")
    return value


@dataclass
class Proc:
    rss_kib: int
    fds: int
    threads: int


def _proc(pid: int) -> Proc | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return Proc(int(fields["VmRSS"].split()[0]), fds, int(fields["Threads"]))


def engine_usage(ws: E2EWorkspace) -> Proc:
    """The engine's supervisor and every process of its group, summed."""
    record = json.loads((ws.root / ".mlops" / "engine.json").read_text())
    group = int(record["pid"])
    total = Proc(0, 0, 0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != group:
                continue
        except OSError:
            continue
        usage = _proc(int(entry))
        if usage is not None:
            total = Proc(
                total.rss_kib + usage.rss_kib, total.fds + usage.fds, total.threads + usage.threads
            )
    return total


@dataclass
class Cycle:
    kind: str
    version: str
    code: int
    seconds: float
    controller_peak_kib: int


@dataclass
class Soak:
    ws: E2EWorkspace
    cycles: list[Cycle] = field(default_factory=list)

    def run_cli(self, *args: str) -> tuple[int, str, int]:
        """One `mlops` command; its exit code, output and peak RSS (KiB, from wait4)."""
        with tempfile.TemporaryFile("w+") as out:
            process = subprocess.Popen(
                self.ws.command(*args),
                cwd=self.ws.root,
                env=self.ws.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
            )
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            return process.returncode, out.read(), int(usage.ru_maxrss)

    def spec(self, version: str, *, artifact: str | None = None, pause: bool = False) -> None:
        self.ws.spec(
            version,
            artifact=artifact,
            accuracy_of="1.1.0" if artifact else None,
            steps=((25, 2.0), (50, 2.0), (100, 0.0)),
            interval=0.5,
            min_requests=10**6 if pause else 1,
            gates="[{metric: error_rate, max: 0.02}]",
        )

    def promote(self, version: str) -> None:
        self.spec(version)
        started = time.monotonic()
        code, out, peak = self.run_cli("apply", "--auto-approve", "specs/")
        if code != 0:
            raise SystemExit(f"soak: promoting {version} failed ({code}):\n{out}")
        self.cycles.append(Cycle("promote", version, code, time.monotonic() - started, peak))

    def roll_back(self, version: str, stable: str) -> None:
        self.spec(version, artifact=f"{NAME}-1.1.0.onnx", pause=True)
        started = time.monotonic()
        code, out, peak = self.run_cli("apply", "--auto-approve", "specs/")
        if code != 4:
            raise SystemExit(f"soak: the canary {version} did not pause ({code}):\n{out}")
        back, out, _ = self.run_cli("rollback", NAME)
        if back != 0:
            raise SystemExit(f"soak: rollback of {version} failed ({back}):\n{out}")
        self.spec(stable)  # the spec names the stable version again: nothing to change
        self.cycles.append(Cycle("rollback", version, back, time.monotonic() - started, peak))


def prepare(root: Path) -> E2EWorkspace:
    root.mkdir(parents=True)
    train = [sys.executable, str(ROOT / "examples" / "train.py"), "--out", str(root)]
    for version in ("1.0.0", "1.1.0"):
        subprocess.run([*train, "--version", version], check=True, capture_output=True)
    ws = E2EWorkspace(root=root, port=free_port(), models=root)
    ws.config()
    return ws


def soak(seconds: int, rate: float, work: Path) -> dict[str, Any]:
    ws = prepare(work / "ws")
    runner = Soak(ws)
    runner.spec("1.0.0")
    code, out, _ = runner.run_cli("apply", "--auto-approve", "specs/")
    if code != 0:
        raise SystemExit(f"soak: first deploy failed ({code}):\n{out}")
    try:
        with Load(ws, rate=rate, duration=seconds + 600) as load:
            stable, cycle, minor = "1.0.0", 0, 2
            runner.promote("1.1.0")  # the first cycle warms every code path up
            stable = "1.1.0"
            baseline = engine_usage(ws)
            started = time.monotonic()
            while time.monotonic() - started < seconds:
                cycle += 1
                if cycle % 3 == 0:
                    runner.roll_back(f"1.{minor}.0", stable)
                    minor += 1
                else:
                    stable = "1.0.0" if stable == "1.1.0" else "1.1.0"
                    runner.promote(stable)
                print(
                    f"soak: cycle {cycle} {runner.cycles[-1].kind} {runner.cycles[-1].version} "
                    f"({time.monotonic() - started:.0f}/{seconds} s)",
                    flush=True,
                )
            final = engine_usage(ws)
            elapsed = time.monotonic() - started
            load.wait_answers(int(rate))
        summary = load.summary.to_dict() if load.summary else {}
    finally:
        ws.down()
    peaks = [c.controller_peak_kib for c in runner.cycles]
    first = peaks[: max(1, len(peaks) // 4)]
    last = peaks[-max(1, len(peaks) // 4) :]
    return {
        "seconds": round(elapsed, 1),
        "rate": rate,
        "cycles": [c.__dict__ for c in runner.cycles],
        "promotions": sum(c.kind == "promote" for c in runner.cycles),
        "rollbacks": sum(c.kind == "rollback" for c in runner.cycles),
        "requests": summary,
        "engine": {"after_first_cycle": baseline.__dict__, "end": final.__dict__},
        "engine_rss_growth": (final.rss_kib - baseline.rss_kib) / baseline.rss_kib,
        "controller_peak_kib": {
            "first": statistics.median(first),
            "last": statistics.median(last),
        },
        "controller_rss_growth": (statistics.median(last) - statistics.median(first))
        / statistics.median(first),
    }


def crash_points(count: int) -> dict[str, Any]:
    if count == 0:
        return {"points": 0, "skipped": True}
    env = {**os.environ, "MLOPS_CRASH_POINTS": str(count)}
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-s",
            "-p",
            "no:cacheprovider",
            "--timeout=0",  # 200 points take far longer than the suite's per-test limit
            "tests/e2e/test_crash_points.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    lines = done.stdout.splitlines()
    seeds = [line.split("MLOPS_CRASH_SEED=")[1].split()[0] for line in lines if "SEED=" in line]
    kills = [line for line in lines if line.startswith(("apply kills", "engine kills"))]
    return {
        "points": count,
        "passed": done.returncode == 0,
        "seconds": round(time.monotonic() - started, 1),
        "seeds": seeds,
        "kills": [k.split(":")[0] for k in kills],
        "tail": lines[-3:],
    }


def markdown(result: dict[str, Any]) -> str:
    s = result["soak"]
    req = s["requests"]
    e0, e1 = s["engine"]["after_first_cycle"], s["engine"]["end"]
    c = result["crash_points"]
    ok = "pass" if req.get("failed", 1) == 0 else "MISS"
    grow = "pass" if s["engine_rss_growth"] < 0.05 else "MISS"
    cgrow = "pass" if s["controller_rss_growth"] < 0.05 else "MISS"
    rows = [
        "# Soak (`make soak`: `python bench/soak.py`)",
        "",
        f"`{result['command']}` at {result['commit']}, {result['date']}, on {result['machine']}.",
        "",
        f"{s['seconds']:.0f} s of promote/rollback cycles ({s['promotions']} promotions, "
        f"{s['rollbacks']} rollbacks) under {s['rate']:.0f} requests/s (mlops.loadgen).",
        "",
        "| measure | first cycle done | end | growth | goal |",
        "|---|---|---|---|---|",
        f"| failed requests | | {req.get('failed')} of {req.get('sent')} | | 0: {ok} |",
        f"| engine RSS (supervisor + workers) | {e0['rss_kib'] / 1024:.1f} MiB | "
        f"{e1['rss_kib'] / 1024:.1f} MiB | {s['engine_rss_growth']:+.1%} | < 5%: {grow} |",
        f"| engine file descriptors | {e0['fds']} | {e1['fds']} | {e1['fds'] - e0['fds']:+d} | |",
        f"| engine threads | {e0['threads']} | {e1['threads']} | "
        f"{e1['threads'] - e0['threads']:+d} | |",
        f"| controller peak RSS per apply (median, first / last quarter of cycles) | "
        f"{s['controller_peak_kib']['first'] / 1024:.1f} MiB | "
        f"{s['controller_peak_kib']['last'] / 1024:.1f} MiB | "
        f"{s['controller_rss_growth']:+.1%} | < 5%: {cgrow} |",
    ]
    if c.get("skipped"):
        rows += ["", "Crash points: not run this time (`--crash-points 0`)."]
    else:
        verdict = "passed" if c["passed"] else "FAILED"
        rows += [
            "",
            f"Crash points: `MLOPS_CRASH_POINTS={c['points']} pytest "
            f"tests/e2e/test_crash_points.py` {verdict} in {c['seconds']:.0f} s "
            f"(seeds {', '.join(c['seeds'])}; {'; '.join(c['kills'])}).",
        ]
    return "\n".join(rows) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", default=os.environ.get("SOAK_SECONDS", "600"))
    parser.add_argument("--crash-points", default=os.environ.get("SOAK_CRASH_POINTS", "200"))
    parser.add_argument("--rate", type=float, default=50.0)
    args = parser.parse_args()
    seconds = _bounded_int(str(args.seconds), "--seconds / SOAK_SECONDS", 10, MAX_SECONDS)
    points = _bounded_int(str(args.crash_points), "--crash-points", 0, MAX_POINTS)
    if not 1.0 <= args.rate <= 2000.0:
        raise SystemExit(f"--rate: {args.rate} is outside 1..2000")
    work = Path(tempfile.mkdtemp(prefix="mlops-soak-"))
    try:
        result: dict[str, Any] = {
            "command": " ".join(["python bench/soak.py", *sys.argv[1:]])
            + f" (SOAK_SECONDS={seconds}, crash points {points})",
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "commit": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip(),
            "machine": f"{platform.platform()}, {os.cpu_count()} cores",
            "soak": soak(seconds, args.rate, work),
            "crash_points": crash_points(points),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS_JSON.parent.mkdir(exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(result, indent=1))
    text = markdown(result)
    RESULTS_MD.write_text(text)
    print(text)
    failed = result["soak"]["requests"].get("failed", 1) != 0
    crashed = not result["crash_points"].get("passed", True)
    sys.exit(1 if failed or crashed else 0)


if __name__ == "__main__":
    main()
