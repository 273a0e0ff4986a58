"""A real engine (the local target's, two workers) serving the drift workspace's model, and a
live stream of requests drawn like tests/drift/conftest.py's `live()` (imported, not conftest)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from mlops import workspace as ws_module
from mlops.providers.engine import client as engine_client
from mlops.providers.engine.runtime import LocalRuntime
from mlops.spec import engine as spec_engine
from mlops.spec import load
from tests.drift import conftest

ROWS_PER_REQUEST = 32
# At the engine's default rate (5% of requests, up to 16 rows each) this many requests leave
# about 600 sampled rows: well above the 100 rows a verdict needs.
REQUESTS = 750
CONNECTIONS = 8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def workspace(root: Path, webhook: str | None = None) -> Path:
    config = f"target: local\nserve: {{port: {free_port()}}}\n"
    return conftest.make_registered(root, config, webhook=webhook)


@contextmanager
def serving(root: Path, replicas: int = 2) -> Iterator[LocalRuntime]:
    """The engine with NAME@VERSION loaded and taking all of NAME's traffic."""
    ws = ws_module.open_workspace(root)
    (item,) = load.load_specs([root / "specs"], root)
    assert item.artifact_path is not None
    rt = LocalRuntime(ws)
    rt.start(replicas)
    try:
        settings = spec_engine.engine_settings(item.deployment)
        rt.load(conftest.NAME, conftest.VERSION, item.artifact_path, settings)
        rt.set_traffic(conftest.NAME, {conftest.VERSION: 100}, None)
        yield rt
    finally:
        rt.stop()


def stream(rt: LocalRuntime, shift: dict[int, float], seed: int, requests: int = REQUESTS) -> None:
    """`requests` inference requests of live rows, columns shifted by `shift` sigmas."""
    x = conftest.live(seed, shift, rows=requests * ROWS_PER_REQUEST)
    url = f"{rt.inference_url()}/v2/models/{conftest.NAME}/infer"
    # Several connections: the kernel spreads connections (not requests) over the workers.
    clients = [httpx.Client(timeout=30) for _ in range(CONNECTIONS)]
    try:
        for i in range(requests):
            client = clients[i % CONNECTIONS]
            rows = x[i * ROWS_PER_REQUEST : (i + 1) * ROWS_PER_REQUEST]
            body = {
                "inputs": [
                    {
                        "name": "input",
                        "datatype": "FP32",
                        "shape": list(rows.shape),
                        "data": rows.ravel().tolist(),
                    }
                ]
            }
            response = client.post(url, json=body)
            assert response.status_code == 200, response.text
    finally:
        for client in clients:
            client.close()


GAUGE = re.compile(r"^mlops_feature_drift_(sigma|psi)\{([^}]*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def gauges(rt: LocalRuntime) -> list[dict[tuple[str, str], float]]:
    """Per worker that exports them: {(measure, feature): value} of its drift gauges."""
    found = []
    for url in rt.worker_admin_urls():
        with engine_client.AdminClient(url, token=rt.process.admin_token()) as admin:
            text = admin.metrics_text()
        values = {}
        for line in text.splitlines():
            match = GAUGE.match(line)
            if match is None:
                continue
            labels = dict(LABEL.findall(match.group(2)))
            if labels["model"] == conftest.NAME and labels["version"] == conftest.VERSION:
                values[(match.group(1), labels["feature"])] = float(match.group(3))
        if values:
            found.append(values)
    return found


def sampled_rows(rt: LocalRuntime) -> int:
    total = 0
    for url in rt.worker_admin_urls():
        with engine_client.AdminClient(url, token=rt.process.admin_token()) as admin:
            total += int(admin.samples(conftest.NAME, conftest.VERSION)["rows"])
    return total
