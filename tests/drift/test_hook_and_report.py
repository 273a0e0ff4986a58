"""The on_drift hook (real processes, no shell) and the report views, without a registry."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from mlops import datasets, errors
from mlops.drift import hook, page, report, stats

PY = shlex.quote(sys.executable)


@pytest.mark.slow  # starts real processes
def test_hook_runs_in_the_directory_without_a_shell(tmp_path: Path) -> None:
    code = "import os; print(os.getcwd()); print(os.environ['MLOPS_DRIFT_FEATURES'])"
    # `;` and `$HOME` would mean something to a shell; here they are plain argument text.
    result = hook.run(
        f"{PY} -c {shlex.quote(code)} ';' '$HOME'",
        tmp_path,
        env=hook.drift_env("m", "1.0.0", ["a", "b"], None),
    )
    assert result.ok and result.exit_code == 0
    assert result.output.splitlines() == [str(tmp_path), "a,b"]


@pytest.mark.slow  # starts real processes
def test_hook_failure_and_missing_program(tmp_path: Path) -> None:
    failed = hook.run(f"{PY} -c 'import sys; print(\"boom\"); sys.exit(5)'", tmp_path)
    assert not failed.ok and failed.exit_code == 5
    assert failed.error == "exited with code 5" and "boom" in failed.output
    missing = hook.run("/nonexistent/retrain --now", tmp_path)
    assert missing.exit_code is None and missing.error is not None
    assert missing.error.startswith("cannot start '/nonexistent/retrain'")


@pytest.mark.slow  # starts real processes
def test_hook_timeout_kills_the_process_group(tmp_path: Path) -> None:
    # The child starts a grandchild that would outlive it; both must go.
    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print('started', flush=True); time.sleep(60)"
    )
    result = hook.run(f"{PY} -c {shlex.quote(code)}", tmp_path, timeout=2)
    assert result.error == "timed out after 2s" and result.exit_code is None
    assert "started" in result.output


@pytest.mark.slow  # starts real processes
def test_hook_output_is_bounded(tmp_path: Path) -> None:
    result = hook.run(f"{PY} -c 'print(\"x\" * 100000)'", tmp_path)
    assert result.ok and len(result.output) == hook.OUTPUT_LIMIT


@pytest.mark.parametrize("command", ["", "   ", "make 'retrain"])
def test_unparseable_commands(command: str) -> None:
    with pytest.raises(errors.UsageError):
        hook.split(command)


def _run(shift: float) -> report.DriftRun:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(1000, 3))
    live = rng.normal(size=(1000, 3)) + np.array([0.0, shift, 0.0])
    base = datasets.feature_stats({"x": train})
    result = stats.compare(base, stats.columns({"x": live}), threshold_sigma=2.0)
    return report.DriftRun("m", "1.0.0", "data/live.npz", result, hook_command="make retrain")


def test_text_and_json_views() -> None:
    drifted = _run(5.0)
    text = report.to_text(drifted)
    assert "! x[1]" in text and "DRIFT" in text
    assert "1 of 3 feature(s) drifted: x[1]" in text
    assert "`make retrain` not run (pass --run-hook" in text
    doc = json.loads(json.dumps(report.to_json(drifted)))
    assert doc["drifted"] == ["x[1]"] and doc["hook"]["ran"] is False
    assert set(doc["features"][0]) >= {"name", "mean_shift", "psi", "ks", "drifted"}
    calm = report.to_text(_run(0.0))
    assert "No drift: all 3 feature(s) within 2 sigma." in calm and "retrain" not in calm


def test_html_escapes_names_and_reports_progress(tmp_path: Path) -> None:
    run = _run(5.0)
    odd = stats.FeatureDrift(**{**run.result.features[0].__dict__, "name": "<script>x</script>"})
    result = stats.DriftResult(2.0, run.result.rows, (odd, *run.result.features[1:]))
    seen: list[tuple[int, int]] = []
    text = page.render(
        report.DriftRun("m", "1.0.0", "d", result), progress=lambda d, n: seen.append((d, n))
    )
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert seen == [(1, 3), (2, 3), (3, 3)]
    target = tmp_path / "out" / "r.html"
    report.write_html(run, target)
    assert target.read_text().startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.html"]
