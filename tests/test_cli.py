"""The CLI root: --help, --version, examples in every command's help, and a light start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mlops import __version__, cli

REPO = Path(__file__).resolve().parents[1]
# The installed console script, as users run it.
MLOPS = str(Path(sys.executable).parent / "mlops")
HEAVY = ("mlflow", "onnxruntime", "kubernetes", "tritonclient", "sklearn", "docker", "uvicorn")


def test_help_lists_commands_and_an_example() -> None:
    result = CliRunner().invoke(cli.cli, ["--help"])
    assert result.exit_code == 0
    assert "validate" in result.output and "Example" in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli.cli, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def _command_paths() -> list[list[str]]:
    """Every command and sub-command that exists now, e.g. ["validate"], ["policy", "check"]."""
    paths: list[list[str]] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        context = click.Context(group)
        for name in group.list_commands(context):
            command = group.get_command(context, name)
            assert command is not None
            paths.append([*prefix, name])
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])

    walk(cli.cli, [])
    return paths


@pytest.mark.parametrize("path", _command_paths(), ids=" ".join)
def test_every_existing_command_has_help_with_an_example(path: list[str]) -> None:
    result = CliRunner().invoke(cli.cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`mlops {' '.join(path)} --help` has no example"


def test_unknown_command_is_a_usage_error() -> None:
    result = subprocess.run(
        [MLOPS, "no-such-command"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr


def _modules_after(argv: list[str]) -> set[str]:
    """Run the CLI in a fresh interpreter and return the top-level modules it imported."""
    program = (
        "import sys\n"
        "from mlops import cli\n"
        "try:\n"
        f"    cli.main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('\\n' + __import__('json').dumps(sorted({m.split('.')[0] for m in sys.modules})),"
        " file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=REPO, check=False
    )
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "argv", [["--help"], ["validate", "--help"], ["validate", "specs/"]], ids=" ".join
)
def test_start_up_does_not_import_heavy_libraries(argv: list[str]) -> None:
    loaded = _modules_after(argv)
    assert "mlops" in loaded and "click" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_console_script_validates_the_example() -> None:
    result = subprocess.run(
        [MLOPS, "validate", "specs/"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "1 deployment valid." in result.stdout


def test_bad_spec_via_subprocess_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "x.yaml").write_text("apiVersion: mlops/v1\nkind: [\n")
    result = subprocess.run(
        [MLOPS, "-C", str(tmp_path), "validate", str(tmp_path / "specs")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{tmp_path / 'specs' / 'x.yaml'}:3:1: YAML syntax error" in result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["specs", "x.yaml"]
