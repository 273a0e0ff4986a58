"""`mlops drift` end to end against a real MLflow (sqlite) registry holding training stats."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.drift.conftest import FEATURES, NAME, VERSION, live, snapshot
from tests.support import Runner

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _npz(ws: Path, name: str, x: np.ndarray) -> str:
    np.savez(ws / "data" / name, input=x)
    return f"data/{name}"


def test_unshifted_data_is_no_drift(ws: Path, run: Runner) -> None:
    result = run("drift", NAME, "--data", _npz(ws, "same.npz", live(7)))
    assert result.code == 0, result.err
    assert f"{NAME}@{VERSION}" in result.out
    assert "No drift" in result.out


def test_shifted_feature_is_detected_and_named(ws: Path, run: Runner) -> None:
    data = _npz(ws, "shifted.npz", live(8, shift={3: 3.0}))
    result = run("drift", NAME, "--data", data, "--format", "json")
    assert result.code == 2, result.err
    doc = json.loads(result.out)
    assert doc["drift"] is True
    assert doc["drifted"] == ["input[3]"]
    assert doc["version"] == VERSION  # the stable alias
    shifted = next(f for f in doc["features"] if f["name"] == "input[3]")
    assert shifted["mean_shift"] == pytest.approx(3.0, abs=0.25)
    assert shifted["psi"] > 0.5 and shifted["ks"] > 0.5
    calm = [f for f in doc["features"] if f["name"] != "input[3]"]
    assert all(abs(f["mean_shift"]) < 0.2 and f["psi"] < 0.1 for f in calm)
    text = run("drift", NAME, "--data", data)
    assert text.code == 2
    assert "1 of 8 feature(s) drifted: input[3]" in text.out


def test_threshold_comes_from_the_spec(ws: Path, run: Runner) -> None:
    # 1.5 sigma is below the spec's threshold_sigma of 2.
    result = run("drift", NAME, "--data", _npz(ws, "mild.npz", live(9, shift={1: 1.5})))
    assert result.code == 0, result.out


def test_html_report_has_a_plot_per_feature(ws: Path, run: Runner) -> None:
    data = _npz(ws, "report.npz", live(10, shift={5: -4.0}))
    result = run("drift", NAME, "--data", data, "--report", "reports/drift.html")
    assert result.code == 2, result.err
    page = (ws / "reports" / "drift.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == FEATURES
    assert all(base64.b64decode(img).startswith(PNG_MAGIC) for img in images)
    # The drifted feature is highlighted and plotted first.
    assert re.search(r'<figure class="plot drift"><img alt="input\[5\]', page)
    assert page.count('class="plot drift"') == 1
    assert '<tr class="drift"><td>input[5]</td>' in page
    assert "http://" not in page and "https://" not in page  # self-contained
    assert not list((ws / "reports").glob(".*tmp"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tables_with_one_column_per_feature(ws: Path, run: Runner, suffix: str) -> None:
    x = live(11, shift={0: 5.0})
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
    path = ws / "data" / f"table{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_parquet(path)
    result = run("drift", NAME, "--data", f"data/table{suffix}", "--format", "json")
    assert result.code == 2, result.err
    assert json.loads(result.out)["drifted"] == ["input[0]"]


def test_explicit_version(ws: Path, run: Runner) -> None:
    data = _npz(ws, "v.npz", live(12))
    assert run("drift", NAME, "--data", data, "--version", VERSION).code == 0
    missing = run("drift", NAME, "--data", data, "--version", "9.9.9")
    assert missing.code == 1
    assert "9.9.9" in missing.err and "Traceback" not in missing.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "data/narrow.npz"], "training baseline has 8"),
        (["--data", "data/nope.npz"], "does not exist"),
        (["--data", "../outside.npz"], "outside the workspace"),
        (["--data", "data/ok.npz", "--report", "../escape.html"], "outside the workspace"),
        (["--data", "data/ok.npz", "--report", "reports/r.txt"], "must be an .html file"),
        (["--data", "data/ok.npz", "--version", "not-a-version"], "not-a-version"),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(
    ws: Path, run: Runner, args: list[str], message: str
) -> None:
    np.savez(ws / "data" / "narrow.npz", input=live(13)[:, : FEATURES - 1])
    np.savez(ws / "data" / "ok.npz", input=live(14, shift={2: 9.0}))
    np.savez(ws.parent / "outside.npz", input=live(15))
    before = snapshot(ws.parent)
    result = (
        run("drift", NAME, *args, "--report", "reports/bad.html")
        if "--report" not in args
        else run("drift", NAME, *args)
    )
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.err
    assert "Traceback" not in result.err
    assert snapshot(ws.parent) == before


def test_bad_model_names(ws: Path, run: Runner) -> None:
    data = _npz(ws, "n.npz", live(16))
    bad = run("drift", "Not_A_Name", "--data", data)
    assert bad.code == 1 and "DNS-1123" in bad.err
    unknown = run("drift", "ghost", "--data", data)
    assert unknown.code == 1 and "ghost" in unknown.err


@pytest.mark.slow  # runs the on_drift command
def test_hook_runs_only_with_run_hook(ws: Path, run: Runner) -> None:
    data = _npz(ws, "hook.npz", live(17, shift={6: 4.0}))
    skipped = run("drift", NAME, "--data", data)
    assert skipped.code == 2
    assert "not run (pass --run-hook" in skipped.out
    assert not (ws / "hook-ran.txt").exists()

    ran = run("drift", NAME, "--data", data, "--run-hook", "--format", "json")
    assert ran.code == 2, ran.err
    marker = (ws / "hook-ran.txt").read_text()
    assert marker == f"{NAME} {VERSION} input[6] cwd={ws}"
    hook = json.loads(ran.out)["hook"]
    assert hook["ran"] and hook["ok"] and hook["exit_code"] == 0
    assert "retraining input[6]" in hook["output"]


def test_hook_does_not_run_without_drift(ws: Path, run: Runner) -> None:
    result = run("drift", NAME, "--data", _npz(ws, "calm.npz", live(18)), "--run-hook")
    assert result.code == 0
    assert not (ws / "hook-ran.txt").exists()


@pytest.mark.slow  # runs the on_drift command
def test_failing_hook_is_an_error(ws: Path, run: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_EXIT", "3")
    data = _npz(ws, "fail.npz", live(19, shift={4: 4.0}))
    result = run("drift", NAME, "--data", data, "--run-hook")
    assert result.code == 1
    assert "FAILED: exited with code 3" in result.out
    assert "exited with code 3" in result.err
