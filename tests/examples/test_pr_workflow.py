"""examples/ci/pr-local.sh end to end: the pull-request workflow of examples/ci/ against a real
workspace (real MLflow sqlite registry, real engine, real ONNX models), with a policy that
requires two approvals from the sre group.

A first PR deploys 1.0.0; a second changes serving.hardware: its comment shows the plan, the
policy result, the capacity delta and the approvals; its saved plan is refused with one
approval and applied with two; a third plan is changed after it was approved and refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plan.conftest import empty_registry, trained, workspace  # noqa: F401 (fixtures)
from tests.runtime.support import free_port

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "examples" / "ci" / "pr-local.sh"
SIGN_OFF = """
rules:
  - id: two-sre
    message: two SREs sign off every plan before it is applied
    require_approvals: {count: 2, group: sre}
groups:
  sre: [alice, bob]
"""


def _script(ws: Path, pr: int, *args: str) -> subprocess.CompletedProcess[str]:
    """One step for pull request `pr`: its plan is plans/pr-PR.json (as in the workflow)."""
    env = {
        **os.environ,
        "MLOPS": f"{sys.executable} -m mlops",
        "NO_COLOR": "1",
        "PLAN": f"plans/pr-{pr}.json",
    }
    env.pop("MLOPS_DEBUG", None)
    return subprocess.run(
        ["bash", str(SCRIPT), args[0], str(ws), *args[1:]],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=ws.parent,
    )


def _edit(spec: Path, old: str, new: str) -> None:
    text = spec.read_text()
    assert old in text, old
    spec.write_text(text.replace(old, new))


@pytest.mark.slow
def test_pull_request_workflow(workspace: Path) -> None:  # noqa: F811 (the fixture)
    ws = workspace
    (ws / "mlops.yaml").write_text(
        f"target: local\nserve: {{port: {free_port()}}}\n"
        "costs: {currency: USD, cpu_hour: 0.04, memory_gib_hour: 0.005}\n"
    )
    (ws / "policies").mkdir()
    (ws / "policies" / "default.yaml").write_bytes((REPO / "policies/default.yaml").read_bytes())
    (ws / "policies" / "sign-off.yaml").write_text(SIGN_OFF)
    spec = ws / "specs" / "fraud-scorer.yaml"
    comment = ws / "plans" / "pr-2.md"
    try:
        # PR 1: the first deployment, through the same sequence.
        first = _script(ws, 1, "plan")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "Policy check passed" in first.stdout
        assert _script(ws, 1, "approve", "alice", "bob").returncode == 0
        deployed = _script(ws, 1, "apply")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert "Apply complete" in deployed.stdout

        # PR 2: more CPU and memory per replica.
        _edit(spec, "hardware: {cpu: 1, memory: 1Gi,", "hardware: {cpu: 2, memory: 2Gi,")
        planned = _script(ws, 2, "plan")
        assert planned.returncode == 0, planned.stdout + planned.stderr
        text = comment.read_text()
        assert text.startswith("<!-- mlops-plan-comment -->\n### mlops plan: 0 to add, 1 to change")
        assert "update_config" in text and "serving.hardware.cpu 1.0 -> 2.0" in text
        # Capacity: 1 replica x (1 CPU, 1 GiB) -> 1 x (2 CPU, 2 GiB); priced per hour:
        # 1 x 0.04 + 1 x 0.005 = 0.045 before, 2 x 0.04 + 2 x 0.005 = 0.09 after.
        assert "| `fraud-scorer` | 1 | 1 CPU, 1 GiB -> 2 CPU, 2 GiB |" in text
        assert "Cost: USD 0.045/h -> 0.09/h" in text
        assert "#### Policy: passed (" in text
        assert ":hourglass: `two-sre`: 0 of 2 approval(s) from sre (none)" in text
        assert "<sub>plan digest `sha256:" in text

        assert _script(ws, 2, "approve", "alice").returncode == 0
        refused = _script(ws, 2, "apply")
        assert refused.returncode == 1
        assert "lacks approvals: rule two-sre: 1 of 2 approval(s) from sre (alice)" in (
            refused.stderr
        )
        assert (
            json.loads((ws / ".mlops" / "served.json").read_text())["models"]["fraud-scorer"][
                "hardware"
            ]["cpu"]
            == 1.0
        )  # nothing was applied

        assert _script(ws, 2, "approve", "bob").returncode == 0
        approved_comment = _script(ws, 2, "comment")  # the same plan's comment, approved
        assert approved_comment.returncode == 0
        text = comment.read_text()
        assert ":white_check_mark: `two-sre`: 2 of 2 approval(s) from sre (alice, bob)" in text
        applied = _script(ws, 2, "apply")
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "Apply complete" in applied.stdout
        served = json.loads((ws / ".mlops" / "served.json").read_text())
        assert served["models"]["fraud-scorer"]["hardware"]["cpu"] == 2.0
        journaled = sorted((ws / ".mlops" / "journal").glob("*.approvals.json"))
        assert [sorted(a["by"] for a in json.loads(p.read_text())["approvals"]) for p in journaled][
            -1
        ] == ["alice", "bob"]

        # PR 3: approved, then the plan changes (a new push re-plans into the same file).
        _edit(spec, "max_batch_size: 32", "max_batch_size: 64")
        assert _script(ws, 3, "plan").returncode == 0
        assert _script(ws, 3, "approve", "alice", "bob").returncode == 0
        _edit(spec, "max_batch_size: 64", "max_batch_size: 16")
        assert _script(ws, 3, "plan").returncode == 0
        changed = _script(ws, 3, "apply")
        assert changed.returncode == 1
        assert "(the plan changed after it was approved)" in changed.stderr
        assert "2 approval(s) of an earlier version of the plan do not count" in changed.stderr
        assert "no longer count" in (ws / "plans" / "pr-3.md").read_text()
    finally:
        subprocess.run(
            [sys.executable, "-m", "mlops", "-C", str(ws), "down"],
            capture_output=True,
            timeout=120,
            check=False,
        )
