"""End-to-end harness: a fresh workspace per test, driven through the `mlops` CLI against the
real local target (MLflow on sqlite, engine processes, Prometheus or the built-in scraper).

Models are trained once per session with examples/train.py (scikit-learn -> skl2onnx) and
the slow and erroring canaries are derived from them by scripts/model_variants.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NAME = "fraud-scorer"
CLI_TIMEOUT_S = 240


def free_port() -> int:
    """A port the kernel picked as free (bind to port 0), as the engine will bind it."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(span: int = 4) -> int:
    """The serve port of a test workspace. Only it is needed: workers bind their admin
    sockets on kernel-chosen ports and announce them in their state files, so no block of
    ports has to be found free (that search failed on busy machines)."""
    del span
    return free_port()


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/ and data/ with 1.0.0, 1.1.0, a broken 1.2.0, and slow/erroring 1.1.0 variants."""
    out = tmp_path_factory.mktemp("trained")
    train = [sys.executable, str(REPO / "examples" / "train.py"), "--out", str(out)]
    for args in (
        ["--version", "1.0.0"],
        ["--version", "1.1.0"],
        ["--version", "1.2.0", "--variant", "broken"],
    ):
        subprocess.run([*train, *args], check=True, capture_output=True, timeout=300)
    variants = [sys.executable, str(REPO / "scripts" / "model_variants.py")]
    source = out / "models" / f"{NAME}-1.1.0.onnx"
    for kind in ("slow", "erroring"):
        target = out / "models" / f"{NAME}-1.1.0-{kind}.onnx"
        # Slow enough to stand out of the noise of a busy 2-core CI machine (~30 ms/request).
        extra = ["--layers", "48"] if kind == "slow" else []
        subprocess.run(
            [*variants, kind, str(source), str(target), *extra], check=True, capture_output=True
        )
    return out


def baseline(models_dir: Path, version: str) -> float:
    report = json.loads((models_dir / "models" / f"{NAME}-{version}.json").read_text())
    return float(report["value"])


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class E2EWorkspace:
    root: Path
    port: int
    models: Path
    started: list[subprocess.Popen[str]] = field(default_factory=list)

    # -- set-up -------------------------------------------------------------------------------

    def config(self, metrics: str = "builtin") -> None:
        (self.root / "mlops.yaml").write_text(
            f"target: local\nmetrics: {metrics}\nserve: {{host: 127.0.0.1, port: {self.port}}}\n"
        )

    def spec(
        self,
        version: str,
        *,
        artifact: str | None = None,
        accuracy_of: str | None = None,
        steps: Sequence[tuple[int, float]] = ((25, 3.0), (100, 0.0)),
        interval: float = 1.0,
        # Latency is judged loosely unless a test is about it: shared CI machines are noisy.
        gates: str = "[{metric: error_rate, max: 0.02}, {metric: latency_p99, max_increase: 5.0}]",
        min_requests: int = 10,
        consecutive_errors: int = 3,
        keep_previous: float = 0.0,
        p99_ms: float = 1000.0,
    ) -> Path:
        artifact = artifact or f"{NAME}-{version}.onnx"
        value = baseline(self.models, accuracy_of or version)
        step_text = ", ".join(
            f"{{weight: {w}, hold: {h}s}}" if h else f"{{weight: {w}}}" for w, h in steps
        )
        text = f"""apiVersion: mlops/v1
kind: ModelDeployment
metadata: {{name: {NAME}}}
spec:
  model:
    version: {version}
    artifact: ../models/{artifact}
    signature:
      inputs: [{{name: input, dtype: FP32, shape: [-1, 30]}}]
      outputs:
        - {{name: label, dtype: INT64, shape: [-1]}}
        - {{name: probabilities, dtype: FP32, shape: [-1, 2]}}
    baseline: {{metric: accuracy, value: {value}, p99_ms: {p99_ms}}}
    validation: {{data: ../data/{NAME}-val.npz, tolerance: 0.005}}
  serving:
    replicas: {{min: 2, max: 2}}
    batching: {{max_batch_size: 64, max_queue_delay_ms: 2}}
  rollout:
    strategy: canary
    steps: [{step_text}]
    interval: {interval}s
    gates: {gates}
    min_requests: {min_requests}
    consecutive_errors: {consecutive_errors}
    keep_previous: {keep_previous}s
"""
        path = self.root / "specs" / f"{NAME}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return path

    # -- the CLI ------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {**os.environ, "NO_COLOR": "1", "MLOPS_DEBUG": "", "PYTHONUNBUFFERED": "1"}

    def command(self, *args: str) -> list[str]:
        entry = "from mlops.cli import main; main()"
        return [sys.executable, "-c", entry, "-C", str(self.root), *args]

    def mlops(self, *args: str, expect: int | None = 0, timeout: float = CLI_TIMEOUT_S) -> Result:
        done = subprocess.run(
            self.command(*args),
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if expect is not None:
            assert result.code == expect, (
                f"mlops {' '.join(args)} -> {result.code}\n{result.output}"
            )
        return result

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            self.command(*args),
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.started.append(process)
        return process

    def status(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.mlops("status", "--format", "json").stdout)
        return document

    def model(self) -> dict[str, Any]:
        model: dict[str, Any] = self.status()["models"][NAME]
        return model

    def deploy_v1(self) -> None:
        """1.0.0 serving as the stable version (registered by the session template: this
        apply loads it and routes all traffic to it)."""
        self.spec("1.0.0")
        self.mlops("apply", "--auto-approve", "specs/")

    def plan(self, out: str = "plans/next.json") -> str:
        self.mlops("plan", "specs/", "-o", out)
        return out

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin_headers(self) -> dict[str, str]:
        """The workspace's admin token, which the engine's routing and load calls need."""
        try:
            token = (self.root / ".mlops" / "admin-token").read_text().strip()
        except FileNotFoundError:
            return {}  # no engine was started yet
        return {"authorization": f"Bearer {token}"}

    def admin_urls(self, *, serving: bool = False) -> list[str]:
        """The workers' admin addresses; `serving`: only of those that said they listen on the
        data port (a worker announces its admin address first)."""
        urls = []
        for path in sorted((self.root / ".mlops").rglob("worker-*.json")):
            try:
                doc = json.loads(path.read_text())
                if doc.get("serving") or not serving:
                    urls.append(str(doc["admin_url"]))
            except (OSError, ValueError, KeyError, AttributeError):
                continue
        return urls

    def down(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        if (REPO / "mlops" / "commands" / "down.py").is_file():
            self.mlops("down", expect=None, timeout=60)
        else:
            from mlops.providers.engine import runtime as local_runtime
            from mlops.workspace import open_workspace

            local_runtime.LocalRuntime(open_workspace(self.root)).stop()


@pytest.fixture(scope="session")
def stable_template(models: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A workspace where 1.0.0 is registered, conformance-tested and stable, engine stopped.

    Every test's workspace is a copy of it at the same absolute path (the MLflow store keeps
    absolute artifact locations), so registration and conformance of 1.0.0 run once per
    session; each test only re-loads 1.0.0. Tests run one at a time (no xdist)."""
    base = tmp_path_factory.mktemp("e2e")
    root, template = base / "ws", base / "template"
    root.mkdir()
    shutil.copytree(models / "models", root / "models")
    shutil.copytree(models / "data", root / "data")
    first = E2EWorkspace(root=root, port=free_port(), models=models)
    first.config()
    first.spec("1.0.0")
    try:
        first.mlops("apply", "--auto-approve", "specs/")
    finally:
        first.down()
    root.rename(template)
    return root, template


@pytest.fixture
def ws(stable_template: tuple[Path, Path], models: Path) -> Iterator[E2EWorkspace]:
    root, template = stable_template
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(template, root, symlinks=True)
    workspace = E2EWorkspace(root=root, port=free_port(), models=models)
    workspace.config()
    try:
        yield workspace
    finally:
        workspace.down()


class RoutingWatch:
    """Polls every worker's routing table during a run: the highest weight each version ever
    had, as seen by the engine itself; with `index`, also the states each version had in the
    workers' repository index."""

    def __init__(
        self, ws: E2EWorkspace, model: str = NAME, period: float = 0.05, index: bool = False
    ) -> None:
        self.ws, self.model, self.period, self.index = ws, model, period, index
        self.max_weight: dict[str, int] = {}
        self.states: dict[str, set[str]] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RoutingWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=1.0, headers=self.ws.admin_headers()) as client:
            while not self._stop.wait(self.period):
                for url in self.ws.admin_urls():
                    try:
                        table = client.get(f"{url}/v2/routing").raise_for_status().json()
                        rows = (
                            client.post(f"{url}/v2/repository/index", json={}).json()
                            if self.index
                            else []
                        )
                    except (httpx.HTTPError, ValueError):
                        continue
                    weights = (table.get("models", {}).get(self.model) or {}).get("weights", {})
                    self.samples += 1
                    for version, weight in weights.items():
                        self.max_weight[version] = max(self.max_weight.get(version, 0), int(weight))
                    for row in rows:
                        if row.get("name") == self.model:
                            self.states.setdefault(row["version"], set()).add(row.get("state"))


class Load:
    """mlops.loadgen in a thread for the length of a `with` block (bounded by `duration`)."""

    def __init__(
        self, ws: E2EWorkspace, rate: float = 100.0, duration: float = 120.0, poison_every: int = 0
    ) -> None:
        from mlops import loadgen

        self.stop = threading.Event()
        # Filled while the load runs (loadgen records each answer), read at the end.
        self.summary: loadgen.Summary | None = loadgen.Summary()
        self._url = ws.url()
        self._rate = rate
        self._duration = duration
        self._poison_every = poison_every
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from mlops import loadgen

        self.summary = loadgen.run(
            self._url,
            NAME,
            stop=self.stop,
            summary=self.summary,
            rate=self._rate,
            duration=self._duration,
            poison_every=self._poison_every,
            workers=8,
        )

    def answered(self) -> int:
        summary = self.summary
        if summary is None:
            return 0
        with summary.lock:
            return summary.sent

    def wait_answers(self, count: int, timeout: float = 60.0) -> None:
        """Until `count` more requests have been answered (a condition, not a fixed sleep)."""
        target = self.answered() + count
        deadline = time.monotonic() + timeout
        while self.answered() < target:
            assert self._thread.is_alive(), "the load generator stopped"
            assert time.monotonic() < deadline, f"{self.answered()} of {target} answered"
            time.sleep(0.02)

    def __enter__(self) -> Load:
        self._thread.start()
        # The gates' first windows hold traffic: the first second's worth has been answered.
        self.wait_answers(max(1, int(self._rate)))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(30)
