"""The demo scripts' guard rails (issue 10): `SCENARIO=slow make demo-rollback` describes the
slow scenario, not the erroring one, and a demo never deletes a directory it did not make,
nor its own without saying so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "scripts" / "demo-lib.sh"


def bash(script: str, demo: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"source {LIB}\n{script}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DEMO_DIR": str(demo), "PYTHON": sys.executable, **env},
    )


def test_slow_scenario_text_is_about_latency_and_sends_no_poison(tmp_path: Path) -> None:
    done = bash('rollback_scenario slow; echo "$POISON_EVERY|$SCENARIO_TEXT"', tmp_path / "d")
    assert done.returncode == 0, done.stderr
    poison, text = done.stdout.strip().split("|")
    assert poison == "0" and "latency_p99" in text
    assert "out-of-range" not in text and "error-rate" not in text


def test_erroring_scenario_keeps_its_poisoned_rows(tmp_path: Path) -> None:
    done = bash('rollback_scenario erroring; echo "$POISON_EVERY|$SCENARIO_TEXT"', tmp_path / "d")
    poison, text = done.stdout.strip().split("|")
    assert poison == "20" and "out-of-range" in text and "error-rate" in text


def test_an_unknown_scenario_stops_before_anything_is_touched(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "keep.txt").write_text("mine")
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "demo-rollback.sh")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DEMO_DIR": str(demo), "SCENARIO": "bogus", "PYTHON": sys.executable},
    )
    assert done.returncode != 0
    assert "SCENARIO must be erroring or slow, not 'bogus'" in done.stderr
    assert (demo / "keep.txt").read_text() == "mine"


def test_a_directory_the_demo_did_not_make_is_never_deleted(tmp_path: Path) -> None:
    demo = tmp_path / "important"
    demo.mkdir()
    (demo / "keep.txt").write_text("mine")
    done = bash("fresh_workspace", demo)
    assert done.returncode != 0
    assert "is not a demo workspace" in done.stderr and "not deleting it" in done.stderr
    assert (demo / "keep.txt").read_text() == "mine"


def test_the_demos_own_workspace_is_replaced_with_a_warning(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    first = bash("fresh_workspace", demo)
    assert first.returncode == 0, first.stderr
    assert "replacing" not in first.stdout
    (demo / "specs" / "old.yaml").write_text("x: 1\n")
    second = bash("fresh_workspace", demo)
    assert second.returncode == 0, second.stderr
    assert f"replacing the previous demo workspace {demo}" in second.stdout
    assert not (demo / "specs" / "old.yaml").exists() and (demo / "mlops.yaml").is_file()
