"""`mlops drift --live` and the engine's drift gauges, on a real engine fed a live stream."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.drift import conftest, live
from tests.support import Runner

pytestmark = pytest.mark.slow


def test_three_sigma_shift_raises_the_gauge_and_the_live_report(
    tmp_path: Path, run: Runner
) -> None:
    root = live.workspace(tmp_path / "ws")
    with live.serving(root) as rt:
        live.stream(rt, {0: 3.0}, seed=5)
        assert live.sampled_rows(rt) >= 100
        assert live.gauges(rt) == []  # no baseline yet: nothing to compare with
        result = run("-C", str(root), "drift", conftest.NAME, "--live", "--format", "json")
        assert result.code == 2, result.err
        doc = json.loads(result.out)
        assert doc["drifted"] == ["input[0]"]
        assert doc["data"].startswith("live samples (")
        assert doc["rows"] >= 100
        shift = {f["name"]: f["mean_shift"] for f in doc["features"]}
        assert 2.5 < shift["input[0]"] < 3.5
        # The controller gave every worker the baseline: each (with samples) exports gauges.
        assert len(live.gauges(rt)) == 2
        for worker in live.gauges(rt):
            assert worker[("sigma", "input[0]")] > 2.0
            assert worker[("psi", "input[0]")] > 1.0
            others = [v for (m, f), v in worker.items() if m == "sigma" and f != "input[0]"]
            assert len(others) == conftest.FEATURES - 1
            assert all(abs(v) < 1.0 for v in others)
        report = run(
            "-C", str(root), "drift", conftest.NAME, "--live", "--report", "live.html",
            "--save-samples", "data/sampled.npz",
        )  # fmt: skip
        assert report.code == 2
        assert "live samples" in (root / "live.html").read_text()
        # Written only when asked; `mlops drift --data` reads the file back to the same verdict.
        assert oct((root / "data" / "sampled.npz").stat().st_mode & 0o777) == "0o600"
        again = run("-C", str(root), "drift", conftest.NAME, "--data", "data/sampled.npz")
        assert again.code == 2 and "input[0]" in again.out


def test_one_sigma_shift_is_not_drift(tmp_path: Path, run: Runner) -> None:
    root = live.workspace(tmp_path / "ws")
    with live.serving(root) as rt:
        live.stream(rt, {0: 1.0}, seed=6)
        result = run("-C", str(root), "drift", conftest.NAME, "--live", "--format", "json")
        assert result.code == 0, result.err
        doc = json.loads(result.out)
        assert doc["drifted"] == []
        shift = {f["name"]: f["mean_shift"] for f in doc["features"]}
        assert 0.5 < shift["input[0]"] < 1.5
        for worker in live.gauges(rt):
            assert 0.0 < worker[("sigma", "input[0]")] < 2.0


def test_live_needs_enough_samples_and_one_source(tmp_path: Path, run: Runner) -> None:
    root = live.workspace(tmp_path / "ws")
    both = run("-C", str(root), "drift", conftest.NAME, "--live", "--data", "x.npz")
    assert both.code == 1 and "exactly one of --data FILE or --live" in both.err
    down = run("-C", str(root), "drift", conftest.NAME, "--live")
    assert down.code == 1 and "the engine is not running" in down.err
    with live.serving(root, replicas=1) as rt:
        live.stream(rt, {}, seed=7, requests=10)
        few = run("-C", str(root), "drift", conftest.NAME, "--live")
        assert few.code == 1
        assert "needed for a verdict" in few.err
        # Live inputs are users' data: the admin address with its token, nowhere else.
        path = f"/v2/samples/{conftest.NAME}/{conftest.VERSION}"
        (admin_url,) = rt.worker_admin_urls()
        assert httpx.get(rt.inference_url() + path).status_code == 403
        assert httpx.get(admin_url + path).status_code == 403
        assert httpx.put(admin_url + path, json={"features": []}).status_code == 403
        token = {"authorization": f"Bearer {rt.process.admin_token()}"}
        assert httpx.get(admin_url + path, headers=token).status_code == 200
        missing = httpx.get(admin_url + "/v2/samples/other/1.0.0", headers=token)
        assert missing.status_code == 404


def test_live_drift_names_the_container_runtime(tmp_path: Path, run: Runner) -> None:
    root = live.workspace(tmp_path / "ws")
    digest = "0" * 64
    (root / "mlops.yaml").write_text(
        "serve: {runtime: container}\n"
        f"images: {{base: 'debian@sha256:{digest}', repository: 'localhost:5000/team'}}\n"
    )
    result = run("-C", str(root), "drift", conftest.NAME, "--live")
    assert result.code == 1
    assert "serve.runtime 'container'" in result.err and "--data FILE" in result.err
