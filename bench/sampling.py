"""What live input sampling costs the engine: req/s with sampling off, at the default rate,
and at every request, side by side in one run (issue 14; goal: the default costs <= 3%).

    .venv/bin/python bench/sampling.py             # 5 rounds of 10 s per configuration
    .venv/bin/python bench/sampling.py --quick     # 2 rounds of 4 s

Three `mlops serve` processes (one worker each, every setting at its default except
--sample-rate: 0, the default 0.05, and 1) serve the same tiny model (30 FP32 features,
logistic regression: the cheapest model, so the relative cost of sampling is largest) and are
pinned to CPU 0; wrk (one thread, 8 connections, one-row V2 JSON bodies) runs on CPU 1. The
configurations are measured alternately, round after round, so background load hits all
alike; each row is the median over rounds. Only 127.0.0.1 is used; every run is bounded.
The output table is what bench/RESULTS-monitoring.md quotes; JSON in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from engine import HOST, Server, WrkResult, http, log, machine_info, run_wrk, wrk_in_background

ROOT = Path(__file__).resolve().parents[1]
MLOPS = ROOT / ".venv" / "bin" / "mlops"
RESULTS = ROOT / "bench" / "results" / "sampling.json"
RATES = {"off": 0.0, "default (0.05)": 0.05, "every request (1.0)": 1.0}
CONNECTIONS = 8
GOAL = 0.03  # the default rate may cost at most 3% of req/s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class SamplingEngine(Server):
    def __init__(self, name: str, rate: float, repository: Path, workdir: Path) -> None:
        port = free_port()
        self.state = workdir / f"{name}-state"
        command = [str(MLOPS), "serve", "--repository", str(repository), "--host", HOST]
        command += ["--port", str(port), "--state-dir", str(self.state)]
        command += ["--sample-rate", str(rate)]
        super().__init__(name, command, workdir / f"{name}.log", port)
        self.wait_until("/v2/health/ready")

    def sampled_rows(self) -> int:
        # The worker's admin address (a port the kernel chose) is in its state file.
        admin = json.loads((self.state / "worker-0.json").read_text())["admin_url"]
        status, body = http("GET", f"{admin}/v2/samples")
        if status != 200:
            raise RuntimeError(f"{admin}/v2/samples: HTTP {status}")
        return sum(int(v["rows"]) for v in json.loads(body)["versions"])


def paired_rounds(
    engines: dict[str, SamplingEngine], body: Path, rounds: int, seconds: int
) -> dict[str, list[float]]:
    """Each sampling configuration against `off` at the same time: two wrk (CPU 1) drive two
    engines (CPU 0) for the same window, so whatever else runs on the machine slows both
    alike; the ratio of their req/s is the cost of sampling, free of that noise."""
    ratios: dict[str, list[float]] = {label: [] for label in engines if label != "off"}
    for round_ in range(rounds):
        for label in ratios:
            with (
                wrk_in_background(
                    engines["off"].infer_url("tiny"), body, CONNECTIONS // 2, 0
                ) as stop_off,
                wrk_in_background(
                    engines[label].infer_url("tiny"), body, CONNECTIONS // 2, 0
                ) as stop_on,
            ):
                time.sleep(seconds)
                on, off = stop_on(), stop_off()
            ratios[label].append(on.rps / off.rps)
            log(f"paired {round_ + 1}/{rounds} {label} / off: {on.rps / off.rps:.3f}")
    return ratios


def offer_cost(calls: int = 1_000_000) -> float:
    """Nanoseconds per `Sampler.offer` at the default rate (the whole per-request cost in
    the hot path, copies of sampled rows included), measured in this process."""
    import numpy as np

    from mlops.serving import sampling

    sampler = sampling.Sampler(seed=0)
    feeds = {"input": np.zeros((1, 30), dtype=np.float32)}
    offer = sampler.offer
    started = time.perf_counter()
    for _ in range(calls):
        offer("tiny", "1.0.0", feeds, 1)
    return (time.perf_counter() - started) / calls * 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--seconds", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 5)
    seconds = args.seconds or (4 if args.quick else 10)
    sys.path.insert(0, str(ROOT / "bench"))
    from engine_support import models

    with tempfile.TemporaryDirectory(prefix="bench-sampling-") as tmp:
        work = Path(tmp)
        version_dir = work / "repository" / "tiny" / "1.0.0"
        version_dir.mkdir(parents=True)
        tiny = models.tiny_classifier(version_dir / "model.onnx")
        (version_dir / "settings.json").write_text(json.dumps(tiny.settings()))
        body = work / "body.json"
        body.write_bytes(tiny.body)
        engines = {
            label: SamplingEngine(f"rate-{rate}", rate, work / "repository", work)
            for label, rate in RATES.items()
        }
        runs: dict[str, list[WrkResult]] = {label: [] for label in RATES}
        cpu_us: dict[str, list[float]] = {label: [] for label in RATES}
        try:
            for engine in engines.values():  # warm every engine up once
                run_wrk(engine.infer_url("tiny"), body, CONNECTIONS, 2)
            for round_ in range(rounds):
                order = list(engines)
                order = order[round_ % len(order) :] + order[: round_ % len(order)]
                for label in order:
                    engine = engines[label]
                    before = engine.cpu_seconds()
                    result = run_wrk(engine.infer_url("tiny"), body, CONNECTIONS, seconds)
                    per_request = (engine.cpu_seconds() - before) / max(result.requests, 1) * 1e6
                    runs[label].append(result)
                    cpu_us[label].append(per_request)
                    log(
                        f"round {round_ + 1}/{rounds} {label}: {result.rps:.0f} req/s, "
                        f"{per_request:.0f} us CPU/request"
                    )
            paired = paired_rounds(engines, body, rounds, seconds)
            rows = {label: engine.sampled_rows() for label, engine in engines.items()}
        finally:
            for engine in engines.values():
                engine.stop()
    rps = {label: statistics.median(r.rps for r in results) for label, results in runs.items()}
    p99 = {label: statistics.median(r.p99_ms for r in results) for label, results in runs.items()}
    errors = {label: sum(r.errors for r in results) for label, results in runs.items()}
    cpu = {label: statistics.median(values) for label, values in cpu_us.items()}
    spread = {
        label: f"{min(r.rps for r in results):.0f}..{max(r.rps for r in results):.0f}"
        for label, results in runs.items()
    }
    offer_ns = offer_cost()
    off = rps["off"]
    lines = [
        f"| sampling | req/s (median of {rounds} x {seconds} s) | min..max | vs off "
        "| server CPU us/req | vs off | p99 ms | rows held |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label in RATES:
        cost = 1 - rps[label] / off
        cpu_cost = cpu[label] / cpu["off"] - 1
        lines.append(
            f"| {label} | {rps[label]:.0f} | {spread[label]} | {-cost:+.1%} | {cpu[label]:.0f} "
            f"| {cpu_cost:+.1%} "
            f"| {p99[label]:.2f} | {rows[label]} |"
        )
    default_cost = 1 - statistics.median(paired["default (0.05)"])
    verdict = "PASS" if default_cost <= GOAL else "MISS"
    lines.append("")
    lines.append(
        f"Default rate costs {default_cost:.1%} of req/s, paired median (goal <= {GOAL:.0%}): "
        f"{verdict}. The sequential rows above swing with the machine's other load."
    )
    lines.append(
        f"Sampler.offer in-process at the default rate, one-row request: {offer_ns:.0f} ns "
        f"per request = {offer_ns / 1000 / cpu['off']:.2%} of the engine's CPU per request."
    )
    lines.append("")
    lines.append(
        f"Paired (both engines loaded at once on CPU 0, {rounds} x {seconds} s; external load "
        "hits both alike): req/s of sampling over req/s of off, median [min..max]:"
    )
    for label, ratios in paired.items():
        lines.append(
            f"  {label}: {statistics.median(ratios):.3f} [{min(ratios):.3f}..{max(ratios):.3f}]"
            f" -> cost {1 - statistics.median(ratios):+.1%}"
        )
    print("\n".join(lines))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "rounds": rounds,
        "seconds": seconds,
        "connections": CONNECTIONS,
        "median_rps": rps,
        "median_p99_ms": p99,
        "errors": errors,
        "rows_held": rows,
        "median_cpu_us_per_request": cpu,
        "offer_ns": offer_ns,
        "paired_ratios": paired,
        "default_cost": default_cost,
        "runs": {label: [asdict(r) for r in results] for label, results in runs.items()},
    }
    RESULTS.write_text(json.dumps(document, indent=1))
    return 0 if all(e == 0 for e in errors.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
