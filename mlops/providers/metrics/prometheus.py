"""Prometheus for gates: a managed server scraping the local engine, and the Metrics provider
that asks any Prometheus (managed or the workspace's URL) through PromQL.

The server scrapes every engine worker's admin /metrics once a second; targets live in a
file_sd file that Prometheus re-reads on change, so an engine restart with another replica
count only rewrites that file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any, Literal

from mlops import errors, fsio
from mlops.providers.base import Sample, Traffic
from mlops.providers.engine import process as engine_process
from mlops.spec import models as spec
from mlops.workspace import Workspace

BINARY = "/usr/bin/prometheus"
START_TIMEOUT_S = 30.0
QUERY_TIMEOUT_S = 5.0
SCRAPE_INTERVAL_S = 1.0
TARGETS_FILE = "scrape-targets.json"


def installed() -> bool:
    return os.access(BINARY, os.X_OK) or shutil.which("prometheus") is not None


class PrometheusServer:
    """The workspace's own Prometheus: config and data in `.mlops/prometheus/`."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.directory = workspace.state_dir / "prometheus"
        self.record_file = workspace.state_dir / "prometheus.json"
        self.log_file = workspace.state_dir / "logs" / "prometheus.log"
        # In the engine's state directory: its supervisor rewrites it when workers come and
        # go (autoscaling, serving/autoscale.py), apply when it starts or scales the engine.
        self.targets_file = workspace.state_dir / "engine" / TARGETS_FILE

    @property
    def url(self) -> str:
        record = self._record()
        if record is None:
            raise errors.TransientError(
                "the workspace's Prometheus is not running (apply starts it with the engine)"
            )
        return f"http://127.0.0.1:{record['port']}"

    def running(self) -> bool:
        return self._record() is not None

    def start(self) -> str:
        """Start (or keep) the server and point it at the engine's current workers; its URL."""
        self.sync_targets()
        if self.running():
            return self.url
        binary = BINARY if os.access(BINARY, os.X_OK) else shutil.which("prometheus")
        if binary is None:
            raise errors.UsageError(
                "metrics: prometheus needs the Prometheus server (apt-get install prometheus)"
            )
        import psutil

        port = _free_port()
        config = self.directory / "prometheus.yml"
        fsio.atomic_write(config, json.dumps(self._config(), indent=2))  # JSON is valid YAML
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=2d",
        ]
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.directory,
            )  # fmt: skip
        record = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}
        record["port"] = port
        fsio.atomic_write(self.record_file, json.dumps(record))
        self._wait_ready(proc, port)
        return self.url

    def sync_targets(self) -> list[str]:
        """Write the engine's worker admin addresses as scrape targets (atomic replace)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.targets_file.parent.mkdir(parents=True, exist_ok=True)
        record = engine_process.EngineProcess(self.workspace).record()
        urls = record.admin_urls() if record else []
        fsio.atomic_write(self.targets_file, target_groups(urls))
        return urls

    def stop(self) -> bool:
        import psutil

        record = self._record()
        self.record_file.unlink(missing_ok=True)
        if record is None:
            return False
        try:
            proc = psutil.Process(record["pid"])
            proc.terminate()
        except psutil.NoSuchProcess:
            return True
        if engine_process.wait_gone([proc], 15.0):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
            engine_process.wait_gone([proc], 5.0)
        return True

    def _config(self) -> dict[str, Any]:
        interval = f"{SCRAPE_INTERVAL_S:g}s"
        return {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": "mlops-engine",
                    "scrape_interval": interval,
                    "scrape_timeout": interval,
                    "file_sd_configs": [
                        {"files": [str(self.targets_file)], "refresh_interval": "5s"}
                    ],
                }
            ],
        }

    def _record(self) -> dict[str, Any] | None:
        try:
            record = json.loads(self.record_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not engine_process.same_process(
            int(record.get("pid", 0)), float(record.get("create_time", 0))
        ):
            return None
        return record

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> None:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.record_file.unlink(missing_ok=True)
                raise errors.PermanentError(
                    f"Prometheus exited with code {proc.returncode} (log: {self.log_file})"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise errors.TransientError(f"Prometheus was not ready within {START_TIMEOUT_S:.0f}s")


def target_groups(urls: list[str]) -> str:
    """file_sd JSON for these admin URLs (serving/autoscale.py writes the same text)."""
    groups = [
        {"targets": [url.removeprefix("http://")], "labels": {"replica": str(i)}}
        for i, url in enumerate(urls)
    ]
    return json.dumps(groups)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrometheusMetrics:
    """Gate metrics through PromQL (prometheus-api-client)."""

    def __init__(
        self,
        url: str,
        *,
        dialect: Literal["mlops", "triton"] = "mlops",
        version_label: Callable[[str, str], str] | None = None,
    ) -> None:
        """`dialect`: whose metric names the gates read (promql); `version_label` maps a
        semver to the `version` label the engine exports (Triton: its integer version)."""
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        self.url = url
        self.dialect: Literal["mlops", "triton"] = dialect
        self._version_label = version_label
        # No retries: an unreachable backend is a gate `error` now, counted by the tracker.
        self._client = PrometheusConnect(
            url, disable_ssl=True, retry=Retry(total=0), timeout=QUERY_TIMEOUT_S
        )

    def sample(
        self,
        model: str,
        version: str,
        gate: spec.Gate,
        window_seconds: float,
        traffic: Traffic = "routed",
    ) -> Sample:
        from mlops.providers.metrics import promql

        window = promql.window(window_seconds, SCRAPE_INTERVAL_S)
        try:
            label = self._version_label(model, version) if self._version_label else version
            query = promql.gate_query(gate, model, label, window, traffic, self.dialect)
            count = promql.request_count(gate, model, label, window, traffic, self.dialect)
            requests = self._scalar(count)
            value = self._scalar(query)
        except promql.Unanswerable as exc:
            return Sample(None, 0.0, error=str(exc))
        except Exception as exc:  # any backend failure is a measurement error, never a crash
            return Sample(None, 0.0, error=_one_line(f"prometheus at {self.url}: {exc}"))
        return Sample(value, requests or 0.0)

    def _scalar(self, query: str) -> float | None:
        result = self._client.custom_query(query)
        if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
            raw: Any = result[1]  # a scalar result: [time, "value"]
        elif isinstance(result, list) and result:
            raw = result[0]["value"][1]
        else:
            return None
        value = float(raw)
        return value if math.isfinite(value) else None


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
