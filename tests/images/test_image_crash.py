"""A SIGKILL of `mlops apply` inside each image step, then the re-run a person makes: it
converges, each step done once, and the digest recorded on the MLflow version is the one the
registry holds. The other action kinds are crashed in tests/apply/test_executor.py, which
needs no podman; this covers the two that do."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops import api
from mlops.plan import types as t
from mlops.providers.images import services
from tests import support
from tests.apply.test_executor import _CRASHING_APPLY
from tests.images.conftest import NAME, Example
from tests.images.test_plan_apply import Workspace, make_workspace, manifest

pytestmark = pytest.mark.slow

K = t.ActionKind
IMAGE_KINDS = {K.BUILD_IMAGE, K.PUSH_IMAGE}
# (kind, point): "outcome" dies after the step took effect, before the journal says so
# (a re-run does it again on something already done); "intent" before it acts.
CRASHES = [(K.BUILD_IMAGE, "outcome"), (K.PUSH_IMAGE, "intent"), (K.PUSH_IMAGE, "outcome")]


def test_every_image_kind_has_a_crash_case() -> None:
    assert {kind for kind, _ in CRASHES} == IMAGE_KINDS


@pytest.fixture(scope="module")
def environment(stack: services.Services) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCKER_HOST", stack.docker_url)  # the child apply inherits it
        yield


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> support.Runner:
    return support.cli_runner(capsys)


def entries(root: Path) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    for path in sorted((root / ".mlops" / "journal").glob("*.jsonl")):
        found.extend(json.loads(line) for line in path.read_text().splitlines())
    return found


@pytest.mark.parametrize(("kind", "point"), CRASHES, ids=lambda v: str(v))
def test_a_crash_in_an_image_step_resumes_and_converges(
    tmp_path: Path,
    example: Example,
    base: str,
    stack: services.Services,
    environment: None,
    cli: support.Runner,
    kind: t.ActionKind,
    point: str,
) -> None:
    # A repository of its own: the image is not in the registry yet, so both steps run.
    repository = f"{stack.registry}/crash-{kind.value.replace('_', '-')}-{point}"
    ws: Workspace = make_workspace(tmp_path, example, base, repository)
    ws.write("1.0.0")
    try:
        assert cli("-C", str(ws.root), "plan", "specs", "-o", "release.json").code in (0, 2)
        plan = t.Plan.model_validate_json((ws.root / "release.json").read_text())
        (victim,) = [a.id for a in plan.actions if a.kind is kind]
        child = subprocess.run(
            [sys.executable, "-c", _CRASHING_APPLY, str(ws.root), str(ws.root / "release.json"),
             victim, point],
            cwd=ws.root, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr

        held = cli("-C", str(ws.root), "apply", "release.json")
        assert held.code == 1 and "no longer running" in held.err, held.err
        match = re.search(r"mlops unlock (\w+)", held.err)
        assert match is not None, held.err
        assert cli("-C", str(ws.root), "unlock", match.group(1)).code == 0
        resumed = cli("-C", str(ws.root), "apply", "release.json")
        assert resumed.code == 0, resumed.err
        assert "Resuming run" in resumed.out + resumed.err

        journal = entries(ws.root)
        intents = [e["action"] for e in journal if e.get("event") == "intent"]
        done = [e["action"] for e in journal if e.get("event") == "done"]
        assert intents.count(victim) == 2  # the crashed attempt and the resumed one
        assert sorted(map(str, done)) == sorted(a.id for a in plan.actions)
        assert not [e for e in journal if e.get("event") == "failed"]

        digest, reference = ws.version("1.0.0")
        pushed = manifest(repository, "1.0.0")
        assert pushed is not None and digest == pushed.digest
        assert reference == f"{repository}/{NAME}@{digest}"
        assert ws.plan().actions == []  # converged: nothing left to build, push or load
    finally:
        api.down(workspace=ws.root)
