"""Stand-ins for what cannot run here: NVIDIA Triton's /metrics and /config endpoints, and a
real Prometheus that scrapes them.

`TritonExporter` replays Triton's Prometheus text (the families, HELP/TYPE lines and label
sets of a Triton 24.x `/metrics`, recorded format below) with counters that grow with time at
the rates a test sets per version, so that PromQL over it behaves as over a real Triton.
`EngineAsTriton` serves the same Triton text for one pod whose serving container is the mlops
engine (Triton cannot run here): its counters are the engine container's own, read from its
/metrics at each scrape and renamed. `Prometheus` is the Debian `prometheus` binary with a
static scrape target, scraping every second, on a kernel-chosen port.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

# Triton's default first-response histogram buckets (milliseconds).
BUCKETS_MS = (1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0)
HEADER = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
# HELP nv_inference_request_duration_us Cumulative inference request duration in microseconds (includes cached requests)
# TYPE nv_inference_request_duration_us counter
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
# HELP nv_inference_first_response_histogram_ms Duration from request to first response in milliseconds
# TYPE nv_inference_first_response_histogram_ms histogram
"""  # noqa: E501 - Triton's own HELP texts


@dataclass
class Traffic:
    """What one Triton model version serves: requests per second, the failing share and
    where its latencies fall (milliseconds, spread evenly over the list)."""

    rate: float = 50.0
    failing: float = 0.0
    latencies_ms: tuple[float, ...] = (3.0, 4.0, 8.0)


@dataclass
class TritonExporter:
    model: str
    versions: dict[str, Traffic] = field(default_factory=dict)  # Triton integer version

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.pending = 0.0
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def set(self, version: str, traffic: Traffic) -> None:
        with self.lock:
            self.versions[version] = traffic

    def text(self) -> str:
        elapsed = time.monotonic() - self.started
        lines = [HEADER.rstrip("\n")]
        with self.lock:
            versions = dict(self.versions)
        for version, traffic in sorted(versions.items()):
            labels = f'model="{self.model}",version="{version}"'
            total = int(traffic.rate * elapsed)
            failed = int(total * traffic.failing)
            ok = total - failed
            mean_ms = sum(traffic.latencies_ms) / len(traffic.latencies_ms)
            lines += [
                f"nv_inference_request_success{{{labels}}} {ok}",
                f'nv_inference_request_failure{{{labels},reason="BACKEND"}} {failed}',
                f'nv_inference_request_failure{{{labels},reason="REJECTED"}} 0',
                f"nv_inference_count{{{labels}}} {total}",
                f"nv_inference_request_duration_us{{{labels}}} {round(total * mean_ms * 1000)}",
                f"nv_inference_pending_request_count{{{labels}}} {self.pending:g}",
            ]
            share = total / len(traffic.latencies_ms)
            for bound in BUCKETS_MS:
                below = sum(1 for ms in traffic.latencies_ms if ms <= bound)
                lines.append(
                    f'nv_inference_first_response_histogram_ms_bucket{{{labels},le="{bound:g}"}} '
                    f"{round(share * below)}"
                )
            lines += [
                f'nv_inference_first_response_histogram_ms_bucket{{{labels},le="+Inf"}} {total}',
                f"nv_inference_first_response_histogram_ms_sum{{{labels}}} {total * mean_ms:g}",
                f"nv_inference_first_response_histogram_ms_count{{{labels}}} {total}",
            ]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def _serve(text: Callable[[], str | None]) -> ThreadingHTTPServer:
    """/metrics answered by `text()` on a kernel-chosen loopback port (503 when it is None:
    the scrape fails, as it would on a Triton that is down)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/metrics":
                self.send_error(404)
                return
            answer = text()
            if answer is None:
                self.send_error(503)
                return
            body = answer.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    return http


class EngineAsTriton:
    """Triton's /metrics for one pod (model `model`, Triton's integer `version`) whose serving
    container is the mlops engine at `engine_url`, serving the same version as `semver`.

    At each scrape the engine's own counters for that version are read and written in the
    recorded Triton text (HEADER's families and label sets): every inference request counts,
    whatever its route, as Triton cannot tell them apart; 2xx are successes, 5xx failures with
    reason BACKEND, other codes failures with reason OTHER; the engine's duration histogram
    (seconds, successful requests) becomes the first-response histogram in milliseconds, each
    Triton bucket holding the engine's count at the largest engine bound not above it (so a
    quantile can only come out high, never low); its queue depth is the pending count."""

    def __init__(self, model: str, version: int, semver: str, engine_url: str) -> None:
        self.model, self.version, self.semver = model, version, semver
        self.engine_url = engine_url
        self.http = _serve(self.text)
        self.address = f"127.0.0.1:{self.http.server_address[1]}"

    def text(self) -> str | None:
        try:
            answer = httpx.get(f"{self.engine_url}/metrics", timeout=2.0)
        except httpx.HTTPError:
            return None
        if answer.status_code != 200:
            return None
        ok = backend = other = pending = seconds = 0.0
        buckets: dict[float, float] = {}
        for family in text_string_to_metric_families(answer.text):
            for sample in family.samples:
                labels = sample.labels
                if labels.get("model") != self.model or labels.get("version") != self.semver:
                    continue
                if sample.name == "mlops_requests_total":
                    code = labels.get("code", "")
                    if code.startswith("2"):
                        ok += sample.value
                    elif code.startswith("5"):
                        backend += sample.value
                    else:
                        other += sample.value
                elif sample.name == "mlops_request_duration_seconds_bucket":
                    le = float(labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
                elif sample.name == "mlops_request_duration_seconds_sum":
                    seconds += sample.value
                elif sample.name == "mlops_queue_depth":
                    pending += sample.value
        total = ok + backend + other
        series = f'model="{self.model}",version="{self.version}"'
        lines = [
            HEADER.rstrip("\n"),
            f"nv_inference_request_success{{{series}}} {ok:.0f}",
            f'nv_inference_request_failure{{{series},reason="BACKEND"}} {backend:.0f}',
            f'nv_inference_request_failure{{{series},reason="REJECTED"}} 0',
            f'nv_inference_request_failure{{{series},reason="OTHER"}} {other:.0f}',
            f"nv_inference_count{{{series}}} {total:.0f}",
            f"nv_inference_request_duration_us{{{series}}} {seconds * 1e6:.0f}",
            f"nv_inference_pending_request_count{{{series}}} {pending:g}",
        ]
        for bound in BUCKETS_MS:
            below = [count for le, count in buckets.items() if le * 1000 <= bound + 1e-9]
            lines.append(
                f'nv_inference_first_response_histogram_ms_bucket{{{series},le="{bound:g}"}} '
                f"{max(below, default=0.0):.0f}"
            )
        served = buckets.get(float("inf"), 0.0)
        lines += [
            f'nv_inference_first_response_histogram_ms_bucket{{{series},le="+Inf"}} {served:.0f}',
            f"nv_inference_first_response_histogram_ms_sum{{{series}}} {seconds * 1000:g}",
            f"nv_inference_first_response_histogram_ms_count{{{series}}} {served:.0f}",
        ]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    """A real Prometheus scraping `targets` every second (data under `directory`)."""

    def __init__(self, directory: Path, targets: list[str], file_sd: Path | None = None) -> None:
        """Scrape `targets`, and the file_sd file `file_sd` when given (re-read on change)."""
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not os.access(binary, os.X_OK):
            raise RuntimeError("prometheus is not installed (make system-deps installs it)")
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "triton",
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "static_configs": [{"targets": targets}],
                    **(
                        {"file_sd_configs": [{"files": [str(file_sd)], "refresh_interval": "1s"}]}
                        if file_sd
                        else {}
                    ),
                }
            ],
        }
        (directory / "prometheus.yml").write_text(json.dumps(config))
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = (directory / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=directory,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited: {(directory / 'prometheus.log').read_text()}"
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.close()
        raise RuntimeError("prometheus did not become ready")

    def scraped(self, query: str, timeout: float = 30.0) -> list[Mapping[str, Any]]:
        """Wait until `query` has a result (the first scrapes landed)."""
        deadline = time.monotonic() + timeout
        while True:
            body = httpx.get(f"{self.url}/api/v1/query", params={"query": query}).json()
            if body["data"]["result"]:
                return list(body["data"]["result"])
            if time.monotonic() > deadline:
                raise AssertionError(f"no data for {query}")
            time.sleep(0.2)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
