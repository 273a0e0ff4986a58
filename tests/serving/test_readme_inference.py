"""The README's inference examples (curl and tritonclient) run as written against the engine
(issue 10: there was no example of an inference request anywhere)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.runtime.support import free_port
from tests.serving import fixtures

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PORT = "8480"

pytestmark = pytest.mark.slow


def readme_blocks() -> dict[str, str]:
    """The fenced blocks of the README's "Inference requests" section, by language."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Inference requests", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlops serve` with fraud-scorer 1.0.0 staged (30 features, the example's signature)."""
    root = tmp_path_factory.mktemp("readme")
    settings = fixtures.classifier_settings(30)
    settings["signature"]["outputs"].insert(0, {"name": "label", "dtype": "INT64", "shape": [-1]})
    fixtures.write_version(
        root / "repo", "fraud-scorer", "1.0.0", fixtures.classifier_bytes(0, 30), settings
    )
    port = free_port()
    serve = ["--repository", str(root / "repo"), "--port", str(port)]
    serve += ["--admin-port", str(free_port()), "--state-dir", str(root / "state")]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mlops.cli import main; main()", "serve", *serve],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "the engine did not become ready"
            try:
                url = f"http://127.0.0.1:{port}/v2/models/fraud-scorer/versions/1.0.0/ready"
                if httpx.get(url).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        yield str(port)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_curl_example_gets_predictions(engine: str) -> None:
    script = readme_blocks()["sh"]
    assert f"localhost:{EXAMPLE_PORT}/v2/models/fraud-scorer/infer" in script
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace(EXAMPLE_PORT, engine)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["model_name"] == "fraud-scorer" and answer["model_version"] == "1.0.0"
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["probabilities"]["shape"] == [1, 2]
    assert sum(outputs["probabilities"]["data"]) == pytest.approx(1.0, abs=1e-5)


def test_the_tritonclient_example_gets_predictions(engine: str) -> None:
    pytest.importorskip("tritonclient.http")
    code = readme_blocks()["python"]
    assert f'InferenceServerClient("localhost:{EXAMPLE_PORT}")' in code
    done = subprocess.run(
        [sys.executable, "-c", code.replace(EXAMPLE_PORT, engine)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    version, _, probabilities = done.stdout.partition(" ")
    assert version == "1.0.0"
    assert probabilities.count("[") == 5  # a 4 x 2 array, printed by numpy
