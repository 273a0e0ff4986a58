"""The `mlops serve --help` example works as written (issue 10: it pointed at models/, which
is not an engine repository)."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mlops import cli
from tests.runtime.support import free_port
from tests.serving import fixtures


def example_argv() -> list[str]:
    """The `mlops serve ...` line of the help text, as a user would copy it."""
    result = CliRunner().invoke(cli.cli, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    (line,) = [x.strip() for x in result.output.splitlines() if x.strip().startswith("mlops serve")]
    return shlex.split(line)


def test_the_example_names_an_engine_repository_not_the_trainer_output() -> None:
    argv = example_argv()
    repository = argv[argv.index("--repository") + 1]
    assert repository.rstrip("/") != "models"


@pytest.mark.slow
def test_the_help_example_serves_what_apply_staged(tmp_path: Path) -> None:
    # A workspace as apply leaves it: one version staged in .mlops/repository.
    (tmp_path / "mlops.yaml").write_text("target: local\n")
    fixtures.write_version(
        tmp_path / ".mlops" / "repository",
        "clf",
        "1.0.0",
        fixtures.classifier_bytes(),
        fixtures.classifier_settings(),
    )
    argv = example_argv()
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    argv += ["--admin-port", str(free_port()), "--replicas", "1"]
    entry = [sys.executable, "-c", "from mlops.cli import main; main()"]
    proc = subprocess.Popen(
        [*entry, *argv[1:]],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/v2/models/clf/versions/1.0.0/ready")
            except httpx.HTTPError:
                ready = None
            if ready is not None and ready.status_code == 200:
                break
            time.sleep(0.1)
        assert ready is not None and ready.status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)
