"""Remote shadow (the cluster's shadow_agreement path): a real primary engine mirrors routed
requests to a shadow version served by another real engine, compares the answers and exports
the shadow series the gates read; the primary's clients never see a failure."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlops.serving import remote_shadow
from mlops.serving.config import ServeConfig
from tests.serving import fixtures
from tests.serving.conftest import EngineThread, free_port, infer_body


@pytest.fixture
def engines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str, Path]]:
    """(primary URL, shadow URL, shadow file): clf@1.0.0 primary; the shadow engine serves
    1.1.0 (the same bytes) and 1.2.0 (always class 0: disagrees where the primary says 1)."""
    primary_repo, shadow_repo = tmp_path / "primary", tmp_path / "shadow"
    clf = fixtures.classifier_bytes(seed=0)
    settings = fixtures.classifier_settings()
    fixtures.write_version(primary_repo, "clf", "1.0.0", clf, settings)
    fixtures.write_version(shadow_repo, "clf", "1.1.0", clf, settings)
    fixtures.write_version(shadow_repo, "clf", "1.2.0", fixtures.classifier_bytes(seed=5), settings)
    shadow_file = tmp_path / "shadow.json"
    # As the pod sees it: MLOPS_SHADOW_FILE names the mounted ConfigMap's file.
    monkeypatch.setenv(remote_shadow.ENV, str(shadow_file))
    monkeypatch.setattr(remote_shadow, "_CONFIGURED", False)
    monkeypatch.setattr(remote_shadow, "_SHADOWS", None)
    shadow = EngineThread(ServeConfig(repository=shadow_repo, state_dir=tmp_path / "s1"))
    primary = EngineThread(ServeConfig(repository=primary_repo, state_dir=tmp_path / "s0"))
    try:
        yield primary.url, shadow.url, shadow_file
    finally:
        primary.stop()
        shadow.stop()


def counter(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        if labels.items() <= found.items():
            total += float(line.rsplit(" ", 1)[1])
    return total


def send(url: str, rows: list[list[float]]) -> None:
    with httpx.Client() as client:
        for row in rows:
            body = infer_body(1)
            body["inputs"][0]["data"] = row
            response = client.post(f"{url}/v2/models/clf/infer", json=body)
            assert response.status_code == 200, response.text  # the client never sees a copy


def wait_for(check: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def write(path: Path, version: str, url: str, percent: float = 100) -> None:
    doc = {"shadows": {"clf": {"version": version, "url": url, "percent": percent}}}
    path.write_text(json.dumps(doc))
    time.sleep(remote_shadow.RELOAD_EVERY_S + 0.1)  # the engine looks at most once a second


@pytest.mark.slow  # two engines and a few hundred requests
def test_the_primary_mirrors_compares_and_exports_the_shadow_series(
    engines: tuple[str, str, Path],
) -> None:
    primary, shadow, path = engines
    rows = np.random.default_rng(3).normal(size=(40, fixtures.FEATURES)).tolist()
    send(primary, rows[:5])  # no file yet: nothing mirrored
    assert counter(primary, "mlops_shadow_agreement_total") == 0

    write(path, "1.1.0", shadow)
    send(primary, rows)
    wait_for(lambda: counter(primary, "mlops_shadow_agreement_total", version="1.1.0") == 40)
    assert counter(primary, "mlops_shadow_agreement_total", version="1.1.0", agree="true") == 40
    # The gates' shadow series: requests and durations under route="shadow" of the shadow.
    shadow_ok = counter(
        primary, "mlops_requests_total", version="1.1.0", route="shadow", code="200"
    )
    assert shadow_ok == 40
    assert counter(primary, "mlops_request_duration_seconds_count", version="1.1.0") == 40
    # The shadow engine saw them as pinned (direct) calls, never as its own routed traffic.
    assert counter(shadow, "mlops_requests_total", version="1.1.0", route="routed") == 0
    assert counter(shadow, "mlops_requests_total", version="1.1.0", route="direct") == 40

    write(path, "1.2.0", shadow)  # a different model: some answers disagree
    send(primary, rows)
    wait_for(lambda: counter(primary, "mlops_shadow_agreement_total", version="1.2.0") == 40)
    assert counter(primary, "mlops_shadow_agreement_total", version="1.2.0", agree="false") > 0

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: counted, never felt
    write(path, "1.1.0", dead)
    send(primary, rows[:10])
    wait_for(lambda: counter(primary, "mlops_requests_total", version="1.1.0", code="502") == 10)

    path.write_text("{not json")  # a broken file turns the shadow off, serving goes on
    time.sleep(remote_shadow.RELOAD_EVERY_S + 0.1)
    before = counter(primary, "mlops_requests_total", version="1.1.0", route="shadow")
    send(primary, rows[:5])
    assert counter(primary, "mlops_requests_total", version="1.1.0", route="shadow") == before


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "needs"),
        ('{"shadows": {"m": {"version": "1.0.0", "url": "ftp://x"}}}', "http(s)"),
        ('{"shadows": {"m": {"version": "1.0.0", "url": "http://x/path"}}}', "http(s)"),
        ('{"shadows": {"m": {"version": "a b", "url": "http://x"}}}', "not a version"),
        ('{"shadows": {"m": {"version": "1.0.0", "url": "http://x", "percent": 101}}}', "0..100"),
        ('{"shadows": {"m": {"version": "1.0.0", "url": "http://x", "percent": true}}}', "number"),
        ('{"shadows": {"m": {"version": "1.0.0", "url": "http://x", "extra": 1}}}', "only"),
        ('{"shadows": {}, "pad": "' + "x" * (70 << 10) + '"}', "bytes"),
    ],
)
def test_hostile_shadow_files_are_refused_in_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        remote_shadow.parse(text)


def test_a_good_file_parses() -> None:
    doc = '{"shadows": {"m": {"version": "1.1.0", "url": "http://m-v1-1-0:8000/", "percent": 25}}}'
    assert remote_shadow.parse(doc) == {
        "m": remote_shadow.Target("1.1.0", "http://m-v1-1-0:8000", 25.0)
    }
