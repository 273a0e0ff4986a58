"""Side-by-side benchmark of the mlops engine (`mlops serve`) on this machine.

    python bench/engine.py            # full run, about 15 minutes
    python bench/engine.py --quick    # smoke run, a few seconds per measurement

Every server under test is pinned to CPU 0 with `taskset`; the load generator (`wrk`, one
thread, a Lua script that POSTs a V2 JSON body) and this script are pinned to CPU 1. Only
127.0.0.1 is used and every wrk run is bounded in time. Measurements of the configurations
being compared are interleaved round by round, so background noise (other jobs on the
machine) hits both sides alike; each row reports the median over rounds.

Scenarios (issue 6, "bench/engine.py"):
  1. engine vs MLServer 1.7.1 (own venv, custom onnxruntime runtime), tiny model, 1/8/32 conns
  2. engine vs a bare uvicorn + onnxruntime handler (the Python front-end ceiling)
  3. dynamic batching on vs off: compute-bound `wide` MLP and the `tiny` model, 32 conns
  4. 100% shadow vs none (primary latency)
  5. 50 loaded versions vs 1
  6. load + warm-up of a ~500 MB model through the repository API while `tiny` is served
Latency goals of 4-6 are checked twice: at saturation (closed loop, 8 connections) and at
equal offered load (paced to half the saturated rate with random exponential gaps), because
at saturation p99 is mostly queueing behind whatever extra CPU work a configuration does.

Results: a table on stdout, JSON in bench/results/engine.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SUPPORT = BENCH / "engine_support"
PROJECT_PYTHON = ROOT / ".venv" / "bin" / "python"
MLOPS = ROOT / ".venv" / "bin" / "mlops"
MLSERVER_ENV = BENCH / ".env-mlserver"
MLSERVER_REQUIREMENTS = ["mlserver==1.7.1", "uvloop<0.22"]
WRK_SCRIPT = SUPPORT / "wrk_v2.lua"
WRK_PACED_SCRIPT = SUPPORT / "wrk_v2_paced.lua"
DEFAULT_JSON = BENCH / "results" / "engine.json"

SERVER_CPU = 0
CLIENT_CPU = 1
# Servers and wrk run at this nice level (set by --nice) so that other jobs on the machine
# disturb the measurement less; every side of a comparison gets the same.
NICE = ["nice", "-n", "-10"]
HOST = "127.0.0.1"
CONCURRENCIES = (1, 8, 32)
BATCH_CONNS = 32
LATENCY_CONNS = 8
PACED_FRACTION = 0.5
FLEET_SIZE = 50
BIG_MODEL_MB = 500
# "Every feature on" for the engine: routed (unversioned) path, metrics, validation, batching.
BATCHING = {"max_batch_size": 32, "max_queue_delay_ms": 2}
NO_BATCHING = {"max_batch_size": 0}
WARMUP = {"requests": 2}

sys.path.insert(0, str(BENCH))
T = TypeVar("T")


# --------------------------------------------------------------------------- small helpers


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def http(
    method: str, url: str, payload: Any = None, body: bytes | None = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    """One HTTP request with the standard library; returns (status, body), never raises on 4xx."""
    data = body if body is not None else None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def port_pair_free(port: int, offset: int = 1000) -> bool:
    for candidate in (port, port + offset):
        with socket.socket() as sock:
            try:
                sock.bind((HOST, candidate))
            except OSError:
                return False
    return True


def pick_port(preferred: int) -> int:
    for port in range(preferred, preferred + 200, 7):
        if port_pair_free(port):
            return port
    raise RuntimeError(f"no free port pair near {preferred}")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def alternate(items: list[T], round_: int) -> list[T]:
    """The order of the configurations in a round: A B, then B A, ... so that a drift in the
    machine's load, or an after-effect of the previous configuration, hits every side alike."""
    return items if round_ % 2 else items[::-1]


# --------------------------------------------------------------------------- wrk


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    errors: int


def _wrk_command(url: str, body: Path, conns: int, seconds: int, mean_delay_ms: float) -> list[str]:
    script = WRK_PACED_SCRIPT if mean_delay_ms > 0 else WRK_SCRIPT
    command = [*NICE, "taskset", "-c", str(CLIENT_CPU), "wrk", "-t1", f"-c{conns}"]
    command.append(f"-d{seconds}s")
    command += ["--latency", "--timeout", "10s", "-s", str(script), url, "--", str(body)]
    if mean_delay_ms > 0:
        command.append(f"{mean_delay_ms:.3f}")
    return command


def _parse_wrk(output: str) -> WrkResult:
    for line in output.splitlines():
        if line.startswith("WRK_RESULT "):
            raw = json.loads(line.removeprefix("WRK_RESULT "))
            seconds = raw["duration_us"] / 1e6
            return WrkResult(
                requests=raw["requests"],
                seconds=seconds,
                rps=raw["requests"] / seconds if seconds > 0 else 0.0,
                p50_ms=raw["p50_us"] / 1000,
                p90_ms=raw["p90_us"] / 1000,
                p99_ms=raw["p99_us"] / 1000,
                p999_ms=raw["p999_us"] / 1000,
                max_ms=raw["max_us"] / 1000,
                errors=sum(raw["errors"].values()),
            )
    raise RuntimeError(f"wrk printed no result line:\n{output[-2000:]}")


def run_wrk(url: str, body: Path, conns: int, seconds: int, mean_delay_ms: float = 0) -> WrkResult:
    """A bounded wrk run; returns the parsed Lua `done()` line."""
    command = _wrk_command(url, body, conns, seconds, mean_delay_ms)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    return _parse_wrk(done.stdout + done.stderr)


@contextlib.contextmanager
def wrk_in_background(
    url: str, body: Path, conns: int, mean_delay_ms: float, limit_s: int = 120
) -> Iterator[Callable[[], WrkResult]]:
    """Start wrk (bounded by `limit_s`); the yielded callable stops it with SIGINT (wrk then
    prints its summary as usual) and returns the result of the window it ran."""
    process = subprocess.Popen(
        _wrk_command(url, body, conns, limit_s, mean_delay_ms),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def stop() -> WrkResult:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
        return _parse_wrk(output)

    try:
        yield stop
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------- servers


class Server:
    """A server process pinned to SERVER_CPU, in its own process group."""

    label = "server"

    def __init__(
        self,
        name: str,
        command: list[str],
        log_path: Path,
        port: int,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.base = f"http://{HOST}:{port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [*NICE, "taskset", "-c", str(SERVER_CPU), *command],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )

    def infer_url(self, model: str) -> str:
        return f"{self.base}/v2/models/{model}/infer"

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by every live process of the server's group."""
        ticks = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == self.process.pid:  # field 5: process group id
                ticks += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def wait_until(self, path: str, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if http("GET", self.base + path, timeout=2)[0] == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} not ready at {path} after {timeout:.0f}s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class Engine(Server):
    """`mlops serve` with one worker, driven through the repository and routing API."""

    label = "mlops engine"

    def __init__(self, name: str, repository: Path, workdir: Path, port: int) -> None:
        state = workdir / f"{name}-state"
        state.mkdir(parents=True, exist_ok=True)
        command = [
            str(MLOPS),
            "serve",
            "--repository",
            str(repository),
            "--host",
            HOST,
            "--port",
            str(port),
            "--replicas",
            "1",
            "--state-dir",
            str(state),
            "--admin-port",  # the engine's default is now a kernel-chosen port
            str(port + 1000),
        ]
        super().__init__(name, command, workdir / f"{name}.log", port)
        # Load, unload and routing answer only on the admin address (port + 1000, loopback).
        self.admin = f"http://127.0.0.1:{port + 1000}"
        self.wait_until("/v2/health/live")

    def load(self, model: str, version: str, settings: dict[str, Any]) -> float:
        """Load + warm up one version; returns the seconds the API call took."""
        started = time.perf_counter()
        status, body = http(
            "POST",
            f"{self.admin}/v2/repository/models/{model}/load",
            {"parameters": {"version": version, "settings": settings}},
            timeout=600,
        )
        elapsed = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"load {model}@{version}: HTTP {status} {body[:300]!r}")
        return elapsed

    def unload(self, model: str, version: str) -> None:
        status, body = http(
            "POST",
            f"{self.admin}/v2/repository/models/{model}/unload",
            {"parameters": {"version": version}},
            timeout=120,
        )
        if status != 200:
            raise RuntimeError(f"unload {model}@{version}: HTTP {status} {body[:300]!r}")

    def route(
        self, model: str, weights: dict[str, int], shadow: dict[str, Any] | None = None
    ) -> None:
        status, body = http(
            "PUT", f"{self.admin}/v2/routing/{model}", {"weights": weights, "shadow": shadow}
        )
        if status != 200:
            raise RuntimeError(f"routing {model}: HTTP {status} {body[:300]!r}")

    def version_ready(self, model: str, version: str) -> bool:
        url = f"{self.base}/v2/models/{model}/versions/{version}/ready"
        return http("GET", url)[0] == 200


class MLServer(Server):
    """MLServer 1.7.1 from bench/.env-mlserver with the onnxruntime runtime of engine_support.

    Settings: `parallel_workers: 0` (inference in the server process: on one pinned core extra
    worker processes only add IPC, and they crash-loop with current uvloop), `metrics_endpoint:
    null` (no metrics server), `gzip_enabled: false`, `debug: false` (no access log). REST is
    what is measured; MLServer always starts its gRPC server too, which stays idle.
    """

    label = "MLServer 1.7.1"

    def __init__(self, model_path: Path, model: str, workdir: Path, port: int) -> None:
        home = workdir / "mlserver"
        (home / model).mkdir(parents=True, exist_ok=True)
        shutil.copy(model_path, home / model / "model.onnx")
        settings = {
            "debug": False,
            "parallel_workers": 0,
            "metrics_endpoint": None,
            "gzip_enabled": False,
            "host": HOST,
            "http_port": port,
            "grpc_port": port + 1,
        }
        (home / "settings.json").write_text(json.dumps(settings, indent=2))
        model_settings = {
            "name": model,
            "implementation": "mlserver_onnx.OnnxRuntimeModel",
            "parameters": {"uri": "./model.onnx"},
        }
        (home / model / "model-settings.json").write_text(json.dumps(model_settings, indent=2))
        command = [str(MLSERVER_ENV / "bin" / "mlserver"), "start", str(home)]
        env = {"PYTHONPATH": str(SUPPORT)}
        super().__init__("mlserver", command, workdir / "mlserver.log", port, env=env, cwd=home)
        self.wait_until(f"/v2/models/{model}/ready")


class Bare(Server):
    """The bare handler (engine_support/bare.py) behind one of its HTTP front ends."""

    label = "bare handler"
    labels = {
        "uvicorn": "bare handler",  # the ceiling the engine's goals were set against
        "mlops": "bare mlops front door",
        "raw": "bare raw httptools",
        "granian": "bare granian RSGI",
    }

    def __init__(
        self, model_path: Path, model: str, workdir: Path, port: int, server: str = "uvicorn"
    ) -> None:
        command = [
            str(PROJECT_PYTHON),
            str(SUPPORT / "bare.py"),
            "--server",
            server,
            "--model",
            str(model_path),
            "--name",
            model,
            "--host",
            HOST,
            "--port",
            str(port),
        ]
        self.label = self.labels[server]
        super().__init__(f"bare-{server}", command, workdir / f"bare-{server}.log", port)
        self.wait_until("/v2/health/ready")


def granian_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("granian") is not None


# --------------------------------------------------------------------------- environment


def ensure_mlserver_env() -> None:
    """Create bench/.env-mlserver on first use (MLServer never enters the project's venv)."""
    if (MLSERVER_ENV / "bin" / "mlserver").exists():
        return
    import onnxruntime

    log(f"creating {MLSERVER_ENV.relative_to(ROOT)} (first run only) ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(MLSERVER_ENV)], check=True)
    requirements = [*MLSERVER_REQUIREMENTS, f"onnxruntime=={onnxruntime.__version__}", "numpy"]
    subprocess.run(
        [str(MLSERVER_ENV / "bin" / "pip"), "install", "--quiet", *requirements], check=True
    )


def engine_available() -> tuple[bool, str]:
    if not MLOPS.exists():
        return False, f"{MLOPS} missing"
    try:
        done = subprocess.run(
            [str(MLOPS), "serve", "--help"], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return False, "`mlops serve --help` timed out"
    if done.returncode != 0:
        return False, "`mlops serve --help` failed: " + (done.stderr.strip().splitlines() or [""])[
            -1
        ]
    return True, ""


def machine_info() -> dict[str, Any]:
    def first(command: list[str]) -> str:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout
        return ""

    lscpu = first(["lscpu"])
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    versions: dict[str, str] = {"python": platform.python_version()}
    for package in ("onnxruntime", "uvicorn", "numpy"):
        with contextlib.suppress(Exception):
            versions[package] = __import__(package).__version__
    mlserver_python = MLSERVER_ENV / "bin" / "python"
    if mlserver_python.exists():
        versions["mlserver-env"] = first(
            [
                str(mlserver_python),
                "-c",
                "import importlib.metadata as m;"
                "print(*(f'{p}=={m.version(p)}' for p in ('mlserver','uvloop','onnxruntime')))",
            ]
        ).strip()
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "wrk": first(["wrk", "-v"]).splitlines()[0] if first(["wrk", "-v"]) else "",
        "git_commit": first(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]).strip(),
        "versions": versions,
    }


def loadavg() -> str:
    """1, 5 and 15 minute load averages: a busy machine makes every number noisier."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --------------------------------------------------------------------------- results


@dataclass
class Run:
    """One wrk measurement."""

    scenario: str
    server: str
    model: str
    conns: int
    mode: str  # saturated | paced | no load | during load
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    requests: int
    errors: int
    seconds: float
    cpu_us_per_request: float  # server CPU time per answered request (noise-robust cost)
    mean_delay_ms: float = 0.0


@dataclass
class Row:
    """The median of the runs of one configuration."""

    scenario: str
    server: str
    model: str
    conns: int
    mode: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float
    errors: int
    rounds: int


@dataclass
class Goal:
    scenario: str
    name: str
    target: str
    measured: str
    passed: bool | None  # None: could not be measured
    note: str = ""


@dataclass
class Results:
    profile: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def add(self, run: Run) -> None:
        self.runs.append(run)
        rate = f"{run.rps:9,.0f} req/s"
        flag = f"  ERRORS={run.errors}" if run.errors else ""
        log(
            f"    [{run.scenario}] {run.server:<16} {run.model:<12} c={run.conns:<3} "
            f"{run.mode:<11} r{run.round}: {rate}  p50 {run.p50_ms:6.2f} ms  "
            f"p99 {run.p99_ms:7.2f} ms  cpu {run.cpu_us_per_request:5.0f} us/req{flag}"
        )

    def rows(self) -> list[Row]:
        groups: dict[tuple[str, str, str, int, str], list[Run]] = {}
        for run in self.runs:
            key = (run.scenario, run.server, run.model, run.conns, run.mode)
            groups.setdefault(key, []).append(run)
        return [
            Row(
                *key,
                rps=median([r.rps for r in runs]),
                p50_ms=median([r.p50_ms for r in runs]),
                p99_ms=median([r.p99_ms for r in runs]),
                cpu_us_per_request=median([r.cpu_us_per_request for r in runs]),
                errors=sum(r.errors for r in runs),
                rounds=len(runs),
            )
            for key, runs in groups.items()
        ]

    def row(self, scenario: str, server: str, model: str, conns: int, mode: str) -> Row | None:
        for row in self.rows():
            if (row.scenario, row.server, row.model, row.conns, row.mode) == (
                scenario,
                server,
                model,
                conns,
                mode,
            ):
                return row
        return None


def ratio_goals(
    results: Results,
    scenario: str,
    name: str,
    a: Row | None,
    b: Row | None,
    *,
    min_rps: float | None = None,
    max_p99: float | None = None,
) -> None:
    """Goals comparing row `a` (the engine configuration) with row `b` (the reference)."""
    if a is None or b is None:
        results.goals.append(Goal(scenario, name, "-", "not measured", None))
        return
    note = "errors during the run" if a.errors or b.errors else ""
    if min_rps is None and max_p99 is None:  # a figure reported without a goal
        value = a.rps / b.rps
        measured = f"{value:.2f}x ({a.rps:,.0f} / {b.rps:,.0f}); p99 {a.p99_ms / b.p99_ms:.2f}x"
        results.goals.append(Goal(scenario, f"{name}: req/s ratio", "-", measured, None, note))
        return
    if min_rps is not None:
        value = a.rps / b.rps
        cpu_ratio = b.cpu_us_per_request / a.cpu_us_per_request if a.cpu_us_per_request else 0
        results.goals.append(
            Goal(
                scenario,
                f"{name}: req/s ratio",
                f">= {min_rps:g}x",
                f"{value:.2f}x ({a.rps:,.0f} / {b.rps:,.0f}; per CPU-second {cpu_ratio:.2f}x)",
                value >= min_rps and not note,
                note,
            )
        )
    if max_p99 is not None:
        value = a.p99_ms / b.p99_ms
        results.goals.append(
            Goal(
                scenario,
                f"{name}: p99 ratio",
                f"<= {max_p99:g}x",
                f"{value:.2f}x ({a.p99_ms:.2f} / {b.p99_ms:.2f} ms)",
                value <= max_p99 and not note,
                note,
            )
        )


# --------------------------------------------------------------------------- the benchmark


@dataclass(frozen=True)
class Profile:
    seconds: int
    warmup_seconds: int
    rounds: int
    quick: bool


class Bench:
    def __init__(self, profile: Profile, workdir: Path, scenarios: set[str]) -> None:
        from engine_support import models

        self.models = models
        self.profile = profile
        self.workdir = workdir
        self.scenarios = scenarios
        self.results = Results(profile=asdict(profile))
        self.repository = workdir / "repository"
        self.tiny = models.tiny_classifier(workdir / "models" / "tiny.onnx")
        self.wide = models.wide_mlp(workdir / "models" / "wide.onnx")
        self.bodies = {m.name: self._body_file(m) for m in (self.tiny, self.wide)}
        self.results.extra["models"] = self._describe_models()

    # -- helpers

    def _body_file(self, model: Any) -> Path:
        path = self.workdir / f"{model.name}.json"
        path.write_bytes(model.body)
        return path

    def _describe_models(self) -> dict[str, Any]:
        """Standalone onnxruntime cost of each model (1 thread, CPU 1): context for batching.
        The best of 5 blocks is kept: the model's own cost, not the machine's other jobs."""
        import numpy as np
        import onnxruntime as ort

        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, 0, int(NICE[2]) if NICE else 0)

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        described: dict[str, Any] = {}
        for model in (self.tiny, self.wide):
            session = ort.InferenceSession(
                str(model.path), options, providers=["CPUExecutionProvider"]
            )
            width = model.signature["inputs"][0]["shape"][1]
            timings = {}
            for batch in (1, 32):
                feed = {"input": np.random.default_rng(0).random((batch, width), np.float32)}
                for _ in range(10):
                    session.run(None, feed)
                repeats = 50 if batch == 1 else 10
                blocks = []
                for _ in range(5):
                    started = time.perf_counter()
                    for _ in range(repeats):
                        session.run(None, feed)
                    blocks.append((time.perf_counter() - started) / repeats * 1000)
                timings[batch] = min(blocks)
            described[model.name] = {
                "file_mb": round(model.path.stat().st_size / 1e6, 2),
                "ms_at_batch_1": round(timings[1], 3),
                "ms_at_batch_32": round(timings[32], 3),
                "per_sample_speedup_at_batch_32": round(timings[1] * 32 / timings[32], 2),
            }
        return described

    def place(self, model: Any, name: str, version: str, settings: dict[str, Any]) -> None:
        """Put a model file and its settings.json into the engine repository."""
        target = self.repository / name / version
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(model.path, target / "model.onnx")
        (target / "settings.json").write_text(json.dumps(settings, indent=2))

    def measure(
        self,
        scenario: str,
        server: Server,
        url: str,
        model: str,
        conns: int,
        round_: int,
        mean_delay_ms: float = 0.0,
        mode: str = "saturated",
        body: str = "tiny",
    ) -> Run:
        """Warm up, then one measured wrk run of `body` (a model name) against `url`."""
        body_file = self.bodies[body]
        if self.profile.warmup_seconds:
            run_wrk(url, body_file, conns, self.profile.warmup_seconds, mean_delay_ms)
        cpu_before = server.cpu_seconds()
        result = run_wrk(url, body_file, conns, self.profile.seconds, mean_delay_ms)
        cpu = server.cpu_seconds() - cpu_before
        return self._record(
            scenario, server, model, conns, mode, round_, result, cpu, mean_delay_ms
        )

    def _record(
        self,
        scenario: str,
        server: Server,
        model: str,
        conns: int,
        mode: str,
        round_: int,
        result: WrkResult,
        cpu_seconds: float,
        mean_delay_ms: float = 0.0,
    ) -> Run:
        run = Run(
            scenario,
            server.label,
            model,
            conns,
            mode,
            round_,
            result.rps,
            result.p50_ms,
            result.p99_ms,
            result.p999_ms,
            result.max_ms,
            result.requests,
            result.errors,
            result.seconds,
            cpu_seconds / result.requests * 1e6 if result.requests else 0.0,
            mean_delay_ms,
        )
        self.results.add(run)
        return run

    @staticmethod
    def paced_delay_ms(saturated_rps: float, conns: int) -> float:
        """Mean gap per connection so that `conns` connections offer PACED_FRACTION of the
        saturated rate (latency is small next to the gap, so it is ignored)."""
        return conns / (saturated_rps * PACED_FRACTION) * 1000

    def check_output(self, server: Server, url: str, model: Any) -> None:
        """Every server must return the same prediction as onnxruntime run locally."""
        import numpy as np
        import onnxruntime as ort

        status, raw = http("POST", url, body=model.body)
        if status != 200:
            raise RuntimeError(f"{server.label}: HTTP {status} for {url}: {raw[:300]!r}")
        request = json.loads(model.body)["inputs"][0]
        feed = np.asarray(request["data"], np.float32).reshape(request["shape"])
        session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
        expected = dict(
            zip(
                [o.name for o in session.get_outputs()],
                session.run(None, {"input": feed}),
                strict=True,
            )
        )
        for output in json.loads(raw)["outputs"]:
            if output["name"] in expected:
                got = np.asarray(output["data"], np.float64).ravel()
                want = expected[output["name"]].astype(np.float64).ravel()
                if not np.allclose(got, want, atol=1e-4):
                    raise RuntimeError(f"{server.label}: {output['name']} {got} != {want}")

    # -- scenarios 1-4: one engine process

    def engine_front(self, port: int) -> None:
        tiny_settings = self.tiny.settings(batching=BATCHING, warmup=WARMUP, classification=True)
        self.place(self.tiny, "tiny", "1.0.0", tiny_settings)
        engine = Engine("engine-a", self.repository, self.workdir, port)
        servers: list[Server] = [engine]
        try:
            engine.load("tiny", "1.0.0", tiny_settings)
            engine.route("tiny", {"1.0.0": 100})
            self.check_output(engine, engine.infer_url("tiny"), self.tiny)
            if self.scenarios & {"1", "2"}:
                self.front_door(engine, servers)
            for server in servers[1:]:
                server.stop()
            servers = [engine]
            if "3" in self.scenarios:
                self.batching(engine)
            if "4" in self.scenarios:
                self.shadow(engine)
        finally:
            for server in servers:
                server.stop()

    def front_door(self, engine: Engine, servers: list[Server]) -> None:
        log("== scenarios 1-2: engine vs MLServer vs bare handler (tiny model)")
        if "1" in self.scenarios:
            ensure_mlserver_env()
            mlserver = MLServer(self.tiny.path, "tiny", self.workdir, pick_port(18580))
            servers.append(mlserver)
            self.check_output(mlserver, mlserver.infer_url("tiny"), self.tiny)
        if "2" in self.scenarios:
            fronts = ["uvicorn", "mlops", "raw"]
            if granian_available():
                fronts.append("granian")
            else:
                self.results.skipped.append(
                    "bare granian RSGI: granian is not installed (pip install -e '.[bench]')"
                )
            for offset, front in enumerate(fronts):
                bare = Bare(
                    self.tiny.path, "tiny", self.workdir, pick_port(18680 + 10 * offset), front
                )
                servers.append(bare)
                self.check_output(bare, bare.infer_url("tiny"), self.tiny)
        for conns in CONCURRENCIES:
            for round_ in range(1, self.profile.rounds + 1):
                for server in alternate(servers, round_):
                    self.measure("1-2", server, server.infer_url("tiny"), "tiny", conns, round_)
        results = self.results
        for conns in CONCURRENCIES:
            mine = results.row("1-2", Engine.label, "tiny", conns, "saturated")
            if "1" in self.scenarios:
                theirs = results.row("1-2", MLServer.label, "tiny", conns, "saturated")
                ratio_goals(
                    results,
                    "1",
                    f"engine/MLServer c={conns}",
                    mine,
                    theirs,
                    min_rps=5.0,
                    max_p99=1.0,
                )
            if "2" in self.scenarios:
                ceiling = results.row("1-2", Bare.label, "tiny", conns, "saturated")
                ratio_goals(results, "2", f"engine/bare c={conns}", mine, ceiling, min_rps=1.0)
                ours = results.row("1-2", Bare.labels["mlops"], "tiny", conns, "saturated")
                ratio_goals(
                    results, "2", f"front door: bare mlops/uvicorn c={conns}", ours, ceiling,
                    min_rps=1.0,
                )  # fmt: skip
                for front in ("raw", "granian"):
                    other = results.row("1-2", Bare.labels[front], "tiny", conns, "saturated")
                    if other is not None:
                        ratio_goals(results, "2", f"bare {front}/uvicorn c={conns}", other, ceiling)

    def batching(self, engine: Engine) -> None:
        log("== scenario 3: dynamic batching on vs off")
        variants: list[tuple[Any, str]] = []
        for model in (self.wide, self.tiny):
            for suffix, batching in (("batched", BATCHING), ("unbatched", NO_BATCHING)):
                name = f"{model.name}-{suffix}"
                settings = model.settings(batching=batching, warmup=WARMUP)
                self.place(model, name, "1.0.0", settings)
                engine.load(name, "1.0.0", settings)
                engine.route(name, {"1.0.0": 100})
                self.check_output(engine, engine.infer_url(name), model)
                variants.append((model, name))
        for round_ in range(1, self.profile.rounds + 1):
            for model, name in alternate(variants, round_):
                self.measure(
                    "3", engine, engine.infer_url(name), name, BATCH_CONNS, round_, body=model.name
                )
        for model, minimum, p99 in ((self.wide, 3.0, 1.0), (self.tiny, 0.95, None)):
            on = self.results.row(
                "3", Engine.label, f"{model.name}-batched", BATCH_CONNS, "saturated"
            )
            off = self.results.row(
                "3", Engine.label, f"{model.name}-unbatched", BATCH_CONNS, "saturated"
            )
            ratio_goals(
                self.results,
                "3",
                f"{model.name} batched/unbatched c={BATCH_CONNS}",
                on,
                off,
                min_rps=minimum,
                max_p99=p99,
            )

    def shadow(self, engine: Engine) -> None:
        log("== scenario 4: 100% shadow vs none (tiny 1.0.0 primary, 1.0.1 shadow)")
        settings = self.tiny.settings(batching=BATCHING, warmup=WARMUP, classification=True)
        self.place(self.tiny, "tiny", "1.0.1", settings)
        engine.load("tiny", "1.0.1", settings)
        shadow = {"version": "1.0.1", "percent": 100}
        configs = {"no shadow": None, "100% shadow": shadow}
        url = engine.infer_url("tiny")
        delay = 0.0
        for round_ in range(1, self.profile.rounds + 1):
            for mode in ("saturated", "paced"):
                for label, config in alternate(list(configs.items()), round_):
                    engine.route("tiny", {"1.0.0": 100}, config)
                    run = self.measure(
                        "4",
                        engine,
                        url,
                        f"tiny ({label})",
                        LATENCY_CONNS,
                        round_,
                        delay if mode == "paced" else 0.0,
                        mode,
                    )
                    if mode == "saturated" and config is None and round_ == 1:
                        delay = self.paced_delay_ms(run.rps, LATENCY_CONNS)
        engine.route("tiny", {"1.0.0": 100}, None)
        for mode in ("saturated", "paced"):
            on = self.results.row("4", Engine.label, "tiny (100% shadow)", LATENCY_CONNS, mode)
            off = self.results.row("4", Engine.label, "tiny (no shadow)", LATENCY_CONNS, mode)
            ratio_goals(self.results, "4", f"shadow/none {mode}", on, off, max_p99=1.1)

    # -- scenarios 5-6: a second engine process

    def engine_fleet(self, port: int) -> None:
        settings = self.tiny.settings(batching=BATCHING, warmup=WARMUP, classification=True)
        self.place(self.tiny, "tiny", "1.0.0", settings)
        engine = Engine("engine-b", self.repository, self.workdir, port)
        try:
            engine.load("tiny", "1.0.0", settings)
            engine.route("tiny", {"1.0.0": 100})
            self.check_output(engine, engine.infer_url("tiny"), self.tiny)
            saturated = self.fleet(engine, settings) if "5" in self.scenarios else None
            if "6" in self.scenarios:
                self.big_load(engine, saturated)
        finally:
            engine.stop()

    def fleet(self, engine: Engine, settings: dict[str, Any]) -> float:
        """Scenario 5; returns the saturated req/s of `tiny` with one version loaded."""
        log(f"== scenario 5: {FLEET_SIZE} loaded versions vs 1")
        others = [(f"fleet-{index:02d}", "1.0.0") for index in range(1, FLEET_SIZE)]
        for name, version in others:
            self.place(self.tiny, name, version, settings)
        url = engine.infer_url("tiny")
        delay = 0.0
        saturated = 0.0
        fleet_loaded = False
        for round_ in range(1, self.profile.rounds + 1):
            for loaded in alternate([1, FLEET_SIZE], round_):
                if (loaded == FLEET_SIZE) != fleet_loaded:
                    for name, version in others:
                        if fleet_loaded:
                            engine.unload(name, version)
                        else:
                            engine.load(name, version, settings)
                    fleet_loaded = not fleet_loaded
                label = f"tiny ({loaded} loaded)"
                run = self.measure("5", engine, url, label, LATENCY_CONNS, round_)
                if loaded == 1 and round_ == 1:
                    saturated = run.rps
                    delay = self.paced_delay_ms(run.rps, LATENCY_CONNS)
                self.measure("5", engine, url, label, LATENCY_CONNS, round_, delay, "paced")
        for mode in ("saturated", "paced"):
            many = self.results.row(
                "5", Engine.label, f"tiny ({FLEET_SIZE} loaded)", LATENCY_CONNS, mode
            )
            one = self.results.row("5", Engine.label, "tiny (1 loaded)", LATENCY_CONNS, mode)
            ratio_goals(
                self.results, "5", f"{FLEET_SIZE} versions/1 {mode}", many, one, max_p99=1.1
            )
        return saturated

    def big_load(self, engine: Engine, saturated: float | None) -> None:
        log(f"== scenario 6: load + warm-up of a {BIG_MODEL_MB} MB model while tiny is served")
        url = engine.infer_url("tiny")
        body = self.bodies["tiny"]
        if not saturated:
            saturated = run_wrk(url, body, LATENCY_CONNS, self.profile.seconds).rps
        paced_delay = self.paced_delay_ms(saturated, LATENCY_CONNS)
        log(f"    generating the {BIG_MODEL_MB} MB model ...")
        big_dir = self.repository / "big" / "1.0.0"
        big = self.models.big_model(big_dir / "model.onnx", megabytes=BIG_MODEL_MB)
        settings = big.settings(warmup={"requests": 1})
        (big_dir / "settings.json").write_text(json.dumps(settings, indent=2))
        load_times: list[float] = []
        lead_s = 1.0
        try:
            # At most 3 rounds: each loads 500 MB twice (saturated and paced).
            for round_ in range(1, min(self.profile.rounds, 3) + 1):
                for mode, delay in (("saturated", 0.0), ("paced", paced_delay)):
                    run_wrk(url, body, LATENCY_CONNS, max(1, self.profile.warmup_seconds), delay)
                    cpu_before = engine.cpu_seconds()
                    with wrk_in_background(url, body, LATENCY_CONNS, delay) as stop:
                        time.sleep(lead_s)
                        seconds = engine.load("big", "1.0.0", settings)
                        during = stop()
                    cpu_during = engine.cpu_seconds() - cpu_before
                    if not engine.version_ready("big", "1.0.0"):
                        raise RuntimeError("big@1.0.0 not ready after its load call returned")
                    load_times.append(seconds)
                    engine.unload("big", "1.0.0")
                    time.sleep(0.5)
                    cpu_before = engine.cpu_seconds()
                    with wrk_in_background(url, body, LATENCY_CONNS, delay) as stop:
                        time.sleep(lead_s + seconds)
                        before = stop()
                    cpu_idle = engine.cpu_seconds() - cpu_before
                    for window, result, cpu in (
                        ("no load", before, cpu_idle),
                        ("during load", during, cpu_during),
                    ):
                        self._record(
                            "6",
                            engine,
                            f"tiny ({mode})",
                            LATENCY_CONNS,
                            window,
                            round_,
                            result,
                            cpu,
                            delay,
                        )
                    log(f"    load + warm-up of big@1.0.0: {seconds:.2f} s")
        finally:
            shutil.rmtree(self.repository / "big", ignore_errors=True)
        self.results.extra["big_model_load_seconds"] = [round(s, 3) for s in load_times]
        load = median(load_times)
        self.results.goals.append(
            Goal(
                "6",
                f"{BIG_MODEL_MB} MB load + warm-up until ready",
                "<= 2 s",
                f"{load:.2f} s (median; max {max(load_times):.2f} s)",
                load <= 2.0,
            )
        )
        for mode in ("saturated", "paced"):
            during_row = self.results.row(
                "6", Engine.label, f"tiny ({mode})", LATENCY_CONNS, "during load"
            )
            idle_row = self.results.row(
                "6", Engine.label, f"tiny ({mode})", LATENCY_CONNS, "no load"
            )
            ratio_goals(
                self.results,
                "6",
                f"others' p99 during/before load {mode}",
                during_row,
                idle_row,
                max_p99=1.2,
            )


# --------------------------------------------------------------------------- report


def render(results: Results) -> str:
    lines = [
        "| scen. | server | model / config | conns | mode | req/s | p50 ms | p99 ms "
        "| CPU us/req | errors |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in results.rows():
        lines.append(
            f"| {row.scenario} | {row.server} | {row.model} | {row.conns} | {row.mode} "
            f"| {row.rps:,.0f} | {row.p50_ms:.2f} | {row.p99_ms:.2f} "
            f"| {row.cpu_us_per_request:,.0f} | {row.errors} |"
        )
    lines += ["", "| scen. | goal | target | measured | verdict |", "|---|---|---|---|---|"]
    for goal in results.goals:
        verdict = "n/a" if goal.passed is None else "PASS" if goal.passed else "MISS"
        note = f" ({goal.note})" if goal.note else ""
        lines.append(
            f"| {goal.scenario} | {goal.name} | {goal.target} | {goal.measured} | {verdict}{note} |"
        )
    lines.extend(f"\nskipped: {reason}" for reason in results.skipped)
    return "\n".join(lines)


def ensure_project_python() -> None:
    """Re-run under the project's venv when started with an interpreter lacking its packages."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import skl2onnx  # noqa: F401
    except ImportError:
        if PROJECT_PYTHON.exists() and Path(sys.executable) != PROJECT_PYTHON:
            os.execv(str(PROJECT_PYTHON), [str(PROJECT_PYTHON), *sys.argv])
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 3 s per measurement, one round"
    )
    parser.add_argument(
        "--scenarios", default="1,2,3,4,5,6", help="comma-separated subset of 1-6 (default: all)"
    )
    parser.add_argument("--seconds", type=int, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, help="interleaved rounds per comparison")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--nice",
        type=int,
        default=-10,
        help="nice level of the servers and wrk (default -10, root only; 0 to disable)",
    )
    args = parser.parse_args(argv)
    NICE[:] = ["nice", "-n", str(args.nice)] if args.nice and os.geteuid() == 0 else []
    ensure_project_python()
    if shutil.which("wrk") is None:
        log("wrk not found: apt-get install -y wrk")
        return 1
    if (os.cpu_count() or 1) < 2:
        log("needs 2 CPUs (server on CPU 0, wrk on CPU 1)")
        return 1
    os.sched_setaffinity(0, {CLIENT_CPU})
    profile = Profile(
        seconds=args.seconds or (3 if args.quick else 5),
        warmup_seconds=1,
        rounds=args.rounds or (1 if args.quick else 5),
        quick=args.quick,
    )
    scenarios = {s.strip() for s in args.scenarios.split(",") if s.strip()}
    workdir = Path(tempfile.mkdtemp(prefix="mlops-bench-engine-"))
    started = time.time()
    log(f"work dir {workdir}; profile {profile}; load average {loadavg()}")
    bench = Bench(profile, workdir, scenarios)
    results = bench.results
    results.extra["machine"] = machine_info()
    results.extra["command"] = " ".join(["python", "bench/engine.py", *sys.argv[1:]])
    results.extra["loadavg_start"] = loadavg()
    try:
        available, reason = engine_available()
        if not available:
            results.skipped.append(
                f"mlops engine unavailable ({reason}): engine rows and all goals are missing"
            )
            log(f"!! {results.skipped[-1]}")
            baseline_only(bench)
        else:
            if scenarios & {"1", "2", "3", "4"}:
                bench.engine_front(pick_port(18480))
            if scenarios & {"5", "6"}:
                shutil.rmtree(bench.repository, ignore_errors=True)
                bench.engine_fleet(pick_port(18490))
    finally:
        results.extra["loadavg_end"] = loadavg()
        results.extra["wall_seconds"] = round(time.time() - started, 1)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "profile": results.profile,
                    "extra": results.extra,
                    "skipped": results.skipped,
                    "rows": [asdict(r) for r in results.rows()],
                    "goals": [asdict(g) for g in results.goals],
                    "runs": [asdict(r) for r in results.runs],
                },
                indent=2,
            )
        )
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render(results))
    models = results.extra.get("models", {})
    for name, info in models.items():
        print(f"model {name}: {info}")
    print(
        f"load average {results.extra['loadavg_start']} -> {results.extra['loadavg_end']}; "
        f"{results.extra['wall_seconds']} s; JSON: {args.json}"
    )
    return 0


def baseline_only(bench: Bench) -> None:
    """Without the engine: still measure MLServer and the bare handler (validates the setup)."""
    servers: list[Server] = []
    try:
        ensure_mlserver_env()
        servers.append(MLServer(bench.tiny.path, "tiny", bench.workdir, pick_port(18580)))
        servers.append(Bare(bench.tiny.path, "tiny", bench.workdir, pick_port(18680)))
        for server in servers:
            bench.check_output(server, server.infer_url("tiny"), bench.tiny)
        for conns in CONCURRENCIES:
            for round_ in range(1, bench.profile.rounds + 1):
                for server in servers:
                    bench.measure("1-2", server, server.infer_url("tiny"), "tiny", conns, round_)
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
