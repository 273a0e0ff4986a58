"""Changes made while clients hammer the engine: no request may fail.

Request loops are bounded by count (not time), and nothing here asserts on latency.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.serving import fixtures
from tests.serving.conftest import EngineThread, infer_body


class _Progress:
    """Requests answered so far, so changes happen while clients are demonstrably busy."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.count < n and time.monotonic() < deadline:
            time.sleep(0.005)
        assert self.count >= n, "clients made no progress"


def _hammer(
    url: str,
    paths: list[str],
    requests: int,
    stop: threading.Event | None = None,
    progress: _Progress | None = None,
) -> Callable[[int], tuple[Counter[int], Counter[str]]]:
    """A keep-alive client on http.client: lighter than httpx, so 10,000 requests stay quick."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(infer_body()).encode()
    headers = {"Content-Type": "application/json"}

    def client(i: int) -> tuple[Counter[int], Counter[str]]:
        codes: Counter[int] = Counter()
        versions: Counter[str] = Counter()
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            for n in range(requests):
                if stop is not None and stop.is_set():
                    break
                conn.request("POST", paths[(i + n) % len(paths)], body, headers)
                r = conn.getresponse()
                r.read()
                codes[r.status] += 1
                versions[r.getheader("x-mlops-version", "")] += 1
                if progress is not None:
                    progress.add()
        finally:
            conn.close()
        return codes, versions

    return client


def test_load_and_unload_while_four_clients_hammer_other_versions(
    engine: EngineThread, client: httpx.Client, admin: httpx.Client, repo: Path
) -> None:
    fixtures.write_version(
        repo, "hot", "1.0.0", fixtures.classifier_bytes(seed=5), fixtures.classifier_settings()
    )
    paths = ["/v2/models/batched/infer", "/v2/models/clf/versions/1.0.0/infer"]
    done, progress = threading.Event(), _Progress()
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(_hammer(engine.url, paths, 5_000, done, progress), i) for i in range(4)
        ]
        progress.wait_for(200)
        for _ in range(4):
            load = {"parameters": {"version": "1.0.0"}}
            assert admin.post("/v2/repository/models/hot/load", json=load).status_code == 200
            assert client.post("/v2/models/hot/infer", json=infer_body()).status_code == 200
            assert admin.post("/v2/repository/models/hot/unload", json=load).status_code == 200
            assert client.post("/v2/models/hot/infer", json=infer_body()).status_code == 404
        progress.wait_for(progress.count + 200)
        done.set()
        results = [f.result() for f in futures]
    codes = sum((c for c, _ in results), Counter())
    assert set(codes) == {200}, codes
    assert client.get("/v2/health/ready").status_code == 200


def test_reload_with_new_settings_swaps_without_failing_requests(
    engine: EngineThread, admin: httpx.Client
) -> None:
    done, progress = threading.Event(), _Progress()
    path = ["/v2/models/batched/infer"]
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(_hammer(engine.url, path, 5_000, done, progress), i) for i in range(4)
        ]
        progress.wait_for(200)
        for size in (8, 16, 32):
            settings = fixtures.classifier_settings(max_batch_size=size, max_queue_delay_ms=1)
            load = {"parameters": {"version": "1.0.0", "settings": settings}}
            assert admin.post("/v2/repository/models/batched/load", json=load).status_code == 200
        progress.wait_for(progress.count + 200)
        done.set()
        codes = sum((f.result()[0] for f in futures), Counter())
    assert set(codes) == {200}, codes


def test_weight_change_under_load_splits_within_two_points(
    engine: EngineThread, admin: httpx.Client
) -> None:
    """End to end over HTTP: 10,000 requests after a 70/30 table applied under load."""
    admin.put("/v2/routing/clf", json={"weights": {"1.0.0": 100}})
    with ThreadPoolExecutor(4) as pool:
        warm = [
            pool.submit(_hammer(engine.url, ["/v2/models/clf/infer"], 200), i) for i in range(4)
        ]
        assert (
            admin.put("/v2/routing/clf", json={"weights": {"1.0.0": 70, "1.1.0": 30}}).status_code
            == 200
        )
        before = sum((f.result()[0] for f in warm), Counter())
        runs = [
            pool.submit(_hammer(engine.url, ["/v2/models/clf/infer"], 2_500), i) for i in range(4)
        ]
        results = [f.result() for f in runs]
    admin.put("/v2/routing/clf", json={"weights": {"1.0.0": 100}})
    assert set(before) == {200}
    codes = sum((c for c, _ in results), Counter())
    versions = sum((v for _, v in results), Counter())
    assert codes == {200: 10_000}
    share = 100 * versions["1.1.0"] / 10_000
    assert abs(share - 30) <= 2, versions
