"""The Makefile's entry points (issue 10): `make test-fast` runs the unit tier only, and
`make test`'s system-deps step says what it installs and installs no recommended packages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_test_fast_selects_the_unit_tier() -> None:
    done = make("-n", "test-fast")
    assert done.returncode == 0, done.stderr
    (command,) = [line for line in done.stdout.splitlines() if "pytest" in line]
    assert "-m 'not slow'" in command and "--ignore=tests/e2e" in command
    # What that selection collects: tests, none of them slow or end-to-end.
    select = ["-m", "not slow", "--ignore=tests/e2e", "-p", "no:cacheprovider"]
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *select],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    assert len(ids) > 100
    assert not any(line.startswith("tests/e2e/") for line in ids)
    assert "tests/plan/test_integrity.py::test_other_served_bytes_are_an_outside_change" in (
        "\n".join(ids)
    )
    assert not any("test_tampered_staged_model_is_planned_repaired" in line for line in ids)


def test_make_test_stays_the_full_suite() -> None:
    done = make("-n", "test")
    (command,) = [line for line in done.stdout.splitlines() if "-m pytest" in line]
    assert "not slow" not in command and "--ignore" not in command


def test_system_deps_says_what_it_installs_without_recommends(tmp_path: Path) -> None:
    # apt-get must not really run in a test (root, network, the machine's packages): a stand-in
    # records its arguments, and `id` says root so the install branch is taken.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {calls}\n')
    (bin_dir / "id").write_text("#!/bin/sh\necho 0\n")
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("CI", None)
    done = make("system-deps", "SYSTEM_TOOLS=mlops-no-such-tool", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installing mlops-no-such-tool" in done.stdout
    assert "--no-install-recommends" in done.stdout
    recorded = calls.read_text().splitlines()
    assert recorded[0] == "apt-get update -qq"
    assert recorded[1] == "apt-get install -y -qq --no-install-recommends mlops-no-such-tool"


def test_the_example_specs_drift_hook_is_a_real_target() -> None:
    import yaml

    document = yaml.safe_load((REPO / "specs" / "fraud-scorer.yaml").read_text())
    command = document["spec"]["monitoring"]["drift"]["on_drift"]["command"]
    argv = command.split()
    assert argv[0] == "make"
    done = make("-n", *argv[1:])
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_retrain_trains_the_next_patch_of_the_drifted_version(tmp_path: Path) -> None:
    # As `mlops drift --run-hook` runs it: the drift variables in the environment.
    env = {**os.environ, "MLOPS_DRIFT_MODEL": "fraud-scorer", "MLOPS_DRIFT_VERSION": "1.0.0"}
    done = make("retrain", f"RETRAIN_OUT={tmp_path}", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "retraining fraud-scorer 1.0.1 (drifted: 1.0.0)" in done.stdout
    report = json.loads((tmp_path / "models" / "fraud-scorer-1.0.1.json").read_text())
    assert report["version"] == "1.0.1" and 0.5 < report["value"] <= 1.0
    artifact = tmp_path / "models" / "fraud-scorer-1.0.1.onnx"
    assert artifact.stat().st_size > 0 and (tmp_path / "data" / "fraud-scorer-val.npz").is_file()
    other = make("retrain", f"RETRAIN_OUT={tmp_path}", env={**env, "MLOPS_DRIFT_MODEL": "other"})
    assert other.returncode != 0 and "only the example model" in other.stdout
