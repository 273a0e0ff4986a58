"""Every benchmark in bench/, one command (`make bench`), one table: bench/results.md.

    python bench/run.py              # each benchmark with its own full setting
    QUICK=1 python bench/run.py      # each with a quick setting (minutes, not an hour)
    python bench/run.py --only engine,plan --quick   # the others' last figures are kept

Each benchmark runs as its own process (bounded by a timeout), one after the other; what it
prints is kept in bench/results/run-NAME.log. The figures come from what each one writes:
the goals of bench/engine.py's JSON (req/s and p99 ratios against MLServer and the bare
handler, batching gain, shadow cost, 50 versions, large-model load), and the rows of the
markdown tables the others print (plan at 1,000 and 5,000, registry read, image size and
build time, rollout time, commands, drift over 1,000,000 rows, ...). The `RESULTS-*.md`
files some benchmarks rewrite hold their last full, hand-annotated runs: they are put back
as they were after the run (the quick figures are in bench/results.md only).

bench/results.md gets: machine, date, commit, the mode, one row per benchmark (command,
status, wall time), every figure with its goal and verdict where the benchmark states one,
then the soak section (bench/RESULTS-soak.md, from `make soak`) and the fuzz section
(bench/RESULTS-fuzz.md, from `make fuzz`) as they were last written.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results.md"
LOGS = HERE / "results"
PY = sys.executable


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    timeout_s: int
    what: str


BENCHES = (
    Bench(
        "engine",
        "engine.py",
        ("--json", "bench/results/engine.json"),
        ("--quick", "--json", "bench/results/engine.json"),
        3600,
        "engine vs MLServer and the bare handler, batching, shadow, 50 versions, large model",
    ),
    Bench(
        "plan",
        "plan.py",
        ("--sizes", "1000", "5000", "--runs", "3"),
        ("--sizes", "1000", "5000", "--runs", "1"),
        3600,
        "`mlops plan` at 1,000 and 5,000 models",
    ),
    Bench(
        "commands",
        "commands.py",
        ("--runs", "7", "--sizes", "1", "1000"),
        ("--runs", "2", "--sizes", "1", "1000"),
        3600,
        "wall time of status, registry list/show, plan",
    ),
    Bench(
        "registry",
        "registry.py",
        ("--models", "200", "--versions", "5"),
        ("--models", "20", "--versions", "2", "--repeats", "1"),
        3600,
        "registration rate and the batched registry read",
    ),
    Bench(
        "rollout",
        "rollout.py",
        ("--trials", "3", "--interval", "2", "--hold", "10", "--out", "bench/results/rollout.md"),
        ("--trials", "1", "--interval", "2", "--hold", "4", "--out", "bench/results/rollout.md"),
        1800,
        "breach to weight 0 (rollback time), promotion overhead",
    ),
    Bench("images", "images.py", (), (), 1800, "lean image size and build times"),
    Bench("drift", "drift_large.py", (), (), 1200, "`mlops drift` over 1,000,000 rows"),
    Bench("sampling", "sampling.py", (), ("--quick",), 1800, "cost of live input sampling"),
    Bench("limits", "limits.py", (), ("--quick",), 1800, "connection limits and slowloris"),
    Bench(
        "large_body",
        "large_body.py",
        (),
        ("--seconds", "5"),
        1800,
        "small clients' latency beside 60 MiB bodies",
    ),
)


@dataclass
class Ran:
    bench: Bench
    args: tuple[str, ...]
    status: str = "not run"
    seconds: float = 0.0
    output: str = ""
    figures: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, value, goal, ok
    date: str = ""


def run_one(bench: Bench, quick: bool) -> Ran:
    args = bench.quick if quick else bench.full
    ran = Ran(bench, args)
    script = HERE / bench.script
    if not script.is_file():
        ran.status = "missing"
        return ran
    kept = {p: p.read_bytes() for p in HERE.glob("RESULTS-*.md")}
    started = time.monotonic()
    print(f"bench: {bench.name}: python bench/{bench.script} {' '.join(args)}", flush=True)
    try:
        done = subprocess.run(
            [PY, str(script), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=bench.timeout_s,
        )
        ran.output = done.stdout + done.stderr
        ran.status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
    except subprocess.TimeoutExpired as exc:
        ran.output = str(exc.stdout or "") + str(exc.stderr or "")
        ran.status = f"timeout ({bench.timeout_s} s)"
    ran.seconds = time.monotonic() - started
    LOGS.mkdir(exist_ok=True)
    (LOGS / f"run-{bench.name}.log").write_text(ran.output)
    produced = {
        p: p.read_text() for p in HERE.glob("RESULTS-*.md") if p.read_bytes() != kept.get(p)
    }
    for path, content in kept.items():  # the committed, annotated full runs stay as they were
        path.write_bytes(content)
    ran.figures = figures(bench, ran.output, produced)
    ran.date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    (LOGS / f"run-{bench.name}.json").write_text(
        json.dumps(
            {
                "args": ran.args,
                "status": ran.status,
                "seconds": ran.seconds,
                "figures": ran.figures,
                "date": ran.date,
                "quick": quick,
            }
        )
    )
    print(f"bench: {bench.name}: {ran.status} in {ran.seconds:.0f} s", flush=True)
    return ran


def earlier(bench: Bench, note: str = " (an earlier run)") -> Ran | None:
    """The last recorded run of a benchmark not run this time (`--only`, `--report`)."""
    try:
        raw = json.loads((LOGS / f"run-{bench.name}.json").read_text())
        ran = Ran(bench, tuple(raw["args"]), str(raw["status"]), float(raw["seconds"]))
        ran.figures = [(str(a), str(b), str(c), str(d)) for a, b, c, d in raw["figures"]]
        ran.date = f"{raw['date']}{note}"
        if bench.name == "plan" and not ran.figures:
            ran.figures = plan_figures((LOGS / "run-plan.log").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ran


def figures(
    bench: Bench, output: str, produced: dict[Path, str]
) -> list[tuple[str, str, str, str]]:
    if bench.name == "engine":
        return engine_goals(ROOT / "bench" / "results" / "engine.json")
    if bench.name == "plan":
        return plan_figures(output)
    # What the benchmark printed; the files it rewrote only when it printed no table (a
    # RESULTS file may keep sections of earlier runs, e.g. another storage driver's).
    texts = [output] if table_rows(output) else list(produced.values())
    rows: list[tuple[str, str, str, str]] = []
    for text in texts:
        rows.extend(table_rows(text))
    unique: list[tuple[str, str, str, str]] = []
    for row in rows:
        if row not in unique:
            unique.append(row)
    return unique


def plan_figures(output: str) -> list[tuple[str, str, str, str]]:
    """bench/plan.py prints, per size, the wall and CPU totals of a `mlops plan` process
    (after interpreter start) and the whole process's wall time."""
    rows: list[tuple[str, str, str, str]] = []
    size, wall, cpu = "", "", ""
    for line in output.splitlines():
        words = line.split()
        if len(words) > 1 and words[0].isdigit() and words[1] == "models":
            size = words[0]
        elif line.strip().startswith("wall, best of") and "total " in line:
            wall = line.rsplit("total ", 1)[1].strip().rstrip("s")
        elif line.strip().startswith("CPU of that run") and "total " in line and size:
            cpu = line.rsplit("total ", 1)[1].strip().rstrip("s")
            value = f"wall {wall} s, CPU {cpu} s (after interpreter start)"
            goal, verdict = "", ""
            if size == "1000":
                goal = "< 2 s for 1,000 models"
                verdict = "pass" if float(wall) < 2 else "MISS (wall)" if float(cpu) < 2 else "MISS"
            rows.append((f"plan of {int(size):,} models", value, goal, verdict))
        elif line.startswith("ratio "):
            rows.append(("plan: " + line.split(":")[0], line.split(":", 1)[1].strip(), "", ""))
    return rows


def engine_goals(path: Path) -> list[tuple[str, str, str, str]]:
    try:
        document: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    rows = []
    for goal in document.get("goals", []):
        passed = goal.get("passed")
        verdict = "n/a" if passed is None else "pass" if passed else "MISS"
        name = f"{goal.get('scenario')}. {goal.get('name')}"
        rows.append((name, str(goal.get("measured")), str(goal.get("target")), verdict))
    return rows


def table_rows(text: str) -> list[tuple[str, str, str, str]]:
    """Rows of every markdown table in `text`: (first cell, the other cells but a goal
    column, the goal column, its verdict when the cell says pass/miss)."""
    rows: list[tuple[str, str, str, str]] = []
    header: list[str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not (line.startswith("|") and line.endswith("|")):
            header = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue
        goal_at = next((i for i, h in enumerate(header) if "goal" in h), None)
        goal = cells[goal_at] if goal_at is not None and goal_at < len(cells) else ""
        values = [c for i, c in enumerate(cells[1:], 1) if i != goal_at and c]
        lowered = goal.lower()
        verdict = "pass" if "pass" in lowered else "MISS" if "miss" in lowered else ""
        name = cells[0]
        if name.replace(",", "").isdigit() and len(cells) > 1:  # a size column first
            name, values = f"{name}: {cells[1]}", values[1:]
        rows.append((name, "; ".join(values), goal, verdict))
    return rows


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average {load:.1f} at the end"
    )


def commit() -> str:
    done = subprocess.run(
        ["git", "log", "-1", "--format=%h %s"], cwd=ROOT, capture_output=True, text=True
    )
    return done.stdout.strip()[:100]


def section(path: Path, title: str, how: str) -> list[str]:
    if not path.is_file():
        return ["", f"## {title}", "", f"Not run yet ({how} writes {path.relative_to(ROOT)})."]
    text = path.read_text().strip().splitlines()
    body = text[1:] if text and text[0].startswith("# ") else text
    return ["", f"## {title} (from {path.relative_to(ROOT)}, `{how}`)", "", *body]


def cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")[:220]


def report(ran: list[Ran], quick: bool, wall: float) -> str:
    mode = (
        "QUICK=1: every benchmark with its quick setting (fewer rounds, shorter runs, smaller "
        "sizes); the full settings are `python bench/run.py` without QUICK"
        if quick
        else "full settings"
    )
    lines = [
        "# Benchmark results (`make bench`: `python bench/run.py`)",
        "",
        f"- Machine: {machine()}",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Commit: {commit()}",
        f"- Mode: {mode}; {wall / 60:.0f} min in all",
        "- The machine is shared (other jobs on the same 2 cores): wall times are pessimistic;"
        " ratios compare configurations measured side by side in one run.",
        "",
        "| benchmark | measures | command | status | time | run at |",
        "|---|---|---|---|---|---|",
    ]
    for r in ran:
        command = f"`python bench/{r.bench.script} {' '.join(r.args)}`".replace(" `", "`")
        lines.append(
            f"| {r.bench.name} | {r.bench.what} | {command} | {r.status} | {r.seconds:.0f} s "
            f"| {r.date} |"
        )
    lines += ["", "## Figures against their goals", ""]
    lines += ["| benchmark | figure | measured | goal | verdict |", "|---|---|---|---|---|"]
    for r in ran:
        for name, value, goal, verdict in r.figures:
            if goal:
                lines.append(
                    f"| {r.bench.name} | {cell(name)} | {cell(value)} | {cell(goal)} | {verdict} |"
                )
    lines += ["", "## Other figures (no goal stated)", ""]
    lines += ["| benchmark | figure | measured |", "|---|---|---|"]
    for r in ran:
        for name, value, goal, _ in r.figures:
            if not goal and value:
                lines.append(f"| {r.bench.name} | {cell(name)} | {cell(value)} |")
    lines += section(HERE / "RESULTS-soak.md", "Soak", "make soak")
    lines += section(HERE / "RESULTS-fuzz.md", "Fuzz", "make fuzz")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="as QUICK=1")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument(
        "--report", action="store_true", help="only rewrite results.md from the last runs"
    )
    args = parser.parse_args()
    quick = args.quick or os.environ.get("QUICK", "") not in ("", "0")
    names = {b.name for b in BENCHES}
    only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(only) - names)
    if unknown or len(args.only) > 500:
        raise SystemExit(f"--only: unknown benchmark(s) {unknown[:5]}; known: {sorted(names)}")
    started = time.monotonic()
    ran: list[Ran] = []
    if args.report:
        ran = [r for r in (earlier(b, note="") for b in BENCHES) if r is not None]
        text = report(ran, quick, sum(r.seconds for r in ran))
        RESULTS.write_text(text)
        print(text)
        return
    for bench in BENCHES:
        if not only or bench.name in only:
            ran.append(run_one(bench, quick))
        elif (last := earlier(bench)) is not None:
            ran.append(last)  # kept from its last run, marked as such
    text = report(ran, quick, time.monotonic() - started)
    RESULTS.write_text(text)
    print(text)
    sys.exit(0 if all(r.status == "ok" for r in ran) else 1)


if __name__ == "__main__":
    main()
