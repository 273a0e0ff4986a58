"""Other clients' latency while the engine decodes a 60 MiB JSON request (issue 9, finding 11).

    python bench/large_body.py                      # this checkout, 20 s per measurement
    python bench/large_body.py --baseline d3a5ac0   # also the engine as of that commit
    python bench/large_body.py --seconds 5          # quicker
    python bench/large_body.py --rounds 3           # repeat, alternating the order

One engine worker (no batching, the 30-feature classifier of the example) runs pinned to
CPU 0; the clients run on CPU 1; both at `nice -n -10` (`--nice 0` to turn off, as in
bench/engine.py) so that other jobs on a shared machine disturb them less. Small clients
send one-row inference requests on a fixed schedule (open loop: each request's latency
counts from the time it was due, so a stalled loop shows in full rather than delaying the
next sends; 4 clients, 200 requests/s in all by default). Each configuration is measured
twice: small clients alone, then with a separate process sending 60 MiB JSON requests back
to back. Reported per run: small-request p50/p99/max, the large requests answered and their
mean latency, and the peak RSS of the worker and of its decoder process. With several
rounds the configurations alternate order each round and the summary gives the median p99.

`--baseline REV` runs the engine code of REV (taken with `git archive`, nothing in the
working tree changes) through the same launcher. Results: a table on stdout, JSON in
bench/results/large_body.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
RESULTS = ROOT / "bench" / "results" / "large_body.json"
HOST = "127.0.0.1"
FEATURES = 30
LARGE_BYTES = 60 << 20
SERVER_CPU, CLIENT_CPU = "0", "1"

# Runs the engine from a given source tree (this checkout or an archived commit).
LAUNCHER = """
import sys
root = sys.argv[1]
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path.insert(0, root)
from pathlib import Path
from mlops.serving import ServeConfig, serve
serve(ServeConfig(repository=Path(sys.argv[2]), port=int(sys.argv[3]),
                  admin_port=int(sys.argv[4]), state_dir=Path(sys.argv[5]),
                  max_body_bytes=64 << 20, load_all=True))
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def make_repository(directory: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.serving import fixtures

    settings = fixtures.classifier_settings(features=FEATURES)
    settings["batching"] = {}
    fixtures.write_version(
        directory, "clf", "1", fixtures.classifier_bytes(features=FEATURES), settings
    )


def large_body() -> bytes:
    rng = np.random.default_rng(0)
    sample = orjson.dumps(rng.normal(size=(100, FEATURES)).astype(np.float32).tolist())
    rows = int(LARGE_BYTES / (len(sample) / 100))
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    tensor = {"name": "input", "datatype": "FP32", "shape": [rows, FEATURES], "data": x.tolist()}
    return orjson.dumps({"inputs": [tensor]})


def small_body() -> bytes:
    tensor = {"name": "input", "datatype": "FP32", "shape": [1, FEATURES], "data": [0.25] * 30}
    return orjson.dumps({"inputs": [tensor]})


class Engine:
    def __init__(self, source: Path, repository: Path, nice: int) -> None:
        self.port, admin = free_port(), free_port()
        self.state = Path(tempfile.mkdtemp(prefix="mlops-bench-state-"))
        command = ["nice", "-n", str(nice), "taskset", "-c", SERVER_CPU, str(PYTHON), "-c"]
        command += [LAUNCHER, str(source)]
        command += [str(repository), str(self.port), str(admin), str(self.state)]
        self.process = subprocess.Popen(command)
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(self.port, "/v2/health/ready") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the engine did not become ready")
            time.sleep(0.1)

    def peak_rss_mib(self) -> dict[str, float]:
        """VmHWM of the worker and of its child processes (the decoder), in MiB."""
        peaks: dict[str, float] = {}
        for label, pid in [("worker", self.process.pid), *self._children()]:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[label] = round(int(line.split()[1]) / 1024, 1)
        return peaks

    def _children(self) -> list[tuple[str, int]]:
        pid = self.process.pid
        try:
            text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        except OSError:
            return []
        return [(f"child {c}", int(c)) for c in text.split()]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def small_client(
    port: int, interval: float, until: float, phase: float, out: list[float], errors: list[int]
) -> None:
    body = small_body()
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    due = time.monotonic() + phase
    while due < until:
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        conn.request("POST", "/v2/models/clf/infer", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        out.append(time.monotonic() - due)  # from when it was due: stalls count in full
        if response.status != 200:
            errors.append(response.status)
        due += interval
    conn.close()


def large_sender(port: int, seconds: float, queue: Any) -> None:
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    body = large_body()
    until = time.monotonic() + seconds
    latencies, statuses = [], []
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    queue.put(len(body))  # ready: the body is built
    while time.monotonic() < until:
        start = time.monotonic()
        conn.request("POST", "/v2/models/clf/infer", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        latencies.append(time.monotonic() - start)
        statuses.append(response.status)
    conn.close()
    queue.put((latencies, statuses))


def measure(port: int, seconds: float, clients: int, rate: float, large: bool) -> dict[str, Any]:
    sender = None
    if large:
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        sender = context.Process(target=large_sender, args=(port, seconds, queue))
        sender.start()
        large_size = queue.get(timeout=300)
    until = time.monotonic() + seconds
    interval = clients / rate
    results: list[list[float]] = [[] for _ in range(clients)]
    errors: list[int] = []
    threads = [
        threading.Thread(
            target=small_client,
            args=(port, interval, until, i * interval / clients, results[i], errors),
        )
        for i in range(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies = np.array([x for r in results for x in r]) * 1000
    row: dict[str, Any] = {
        "small_requests": len(latencies),
        "small_errors": len(errors),
        "p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "max_ms": round(float(latencies.max()), 2),
    }
    if sender is not None:
        large_latencies, statuses = queue.get(timeout=600)
        sender.join()
        row["large_body_mib"] = round(large_size / 2**20, 1)
        row["large_answered"] = len(statuses)
        row["large_statuses"] = sorted(set(statuses))
        row["large_mean_s"] = round(float(np.mean(large_latencies)), 2) if statuses else None
    return row


def source_tree(rev: str | None, keep: list[tempfile.TemporaryDirectory[str]]) -> Path:
    if rev is None:
        return ROOT
    directory = tempfile.TemporaryDirectory(prefix="mlops-bench-src-")
    keep.append(directory)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "mlops"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", directory.name], input=archive.stdout, check=True)
    return Path(directory.name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200.0, help="small requests per second")
    parser.add_argument("--baseline", help="also measure the engine of this git revision")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--nice", type=int, default=-10, help="niceness of server and clients")
    args = parser.parse_args()
    os.sched_setaffinity(0, {int(CLIENT_CPU)})
    os.nice(args.nice)  # the spawned large-body sender inherits it
    keep: list[tempfile.TemporaryDirectory[str]] = []
    repository = Path(tempfile.mkdtemp(prefix="mlops-bench-repo-"))
    make_repository(repository)
    configs = [("this checkout", None)] + (
        [(args.baseline, args.baseline)] if args.baseline else []
    )
    sources = {label: source_tree(rev, keep) for label, rev in configs}
    report = []
    for round_ in range(args.rounds):
        for label, _ in configs if round_ % 2 == 0 else configs[::-1]:
            engine = Engine(sources[label], repository, args.nice)
            try:
                for large in (False, True):
                    log(f"round {round_ + 1}, {label}: {'with' if large else 'no'} 60 MiB requests")
                    row = measure(engine.port, args.seconds, args.clients, args.rate, large)
                    row.update(engine=label, large=large, peak_rss_mib=engine.peak_rss_mib())
                    report.append(row)
            finally:
                engine.stop()
    print(f"{'engine':<16} {'60 MiB':<8} {'small p50':>10} {'p99':>9} {'max':>9}  large")
    for r in report:
        sender = (
            f"{r['large_answered']} answered {r['large_statuses']}, mean {r['large_mean_s']} s"
            if r["large"]
            else "-"
        )
        print(
            f"{r['engine']:<16} {'yes' if r['large'] else 'no':<8} {r['p50_ms']:>8} ms"
            f" {r['p99_ms']:>6} ms {r['max_ms']:>6} ms  {sender}  rss {r['peak_rss_mib']}"
        )
    if args.rounds > 1:
        for label, _ in configs:
            for large in (False, True):
                p99 = [r["p99_ms"] for r in report if r["engine"] == label and r["large"] == large]
                print(
                    f"median p99, {label}, {'with' if large else 'without'} 60 MiB: "
                    f"{float(np.median(p99)):.1f} ms over {len(p99)} rounds"
                )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), "runs": report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
