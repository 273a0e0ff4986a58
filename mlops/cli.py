"""The `mlops` command line.

Each command lives in `mlops/commands/<name>.py` and is imported only when it runs, so
`mlops --help` and `mlops validate` never pay for mlflow, onnxruntime or kubernetes.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

import click

from mlops import __version__, errors

# command name -> (module, short help shown by `mlops --help` without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("mlops.commands.validate", "Load and check spec files."),
    "plan": ("mlops.commands.plan", "Diff specs against live state and print the plan."),
    "apply": ("mlops.commands.apply", "Execute a plan: register, test, canary, promote."),
    "show": ("mlops.commands.show", "Render a saved plan file."),
    "approve": ("mlops.commands.approve", "Approve a saved plan (bound to its digest)."),
    "status": ("mlops.commands.status", "Live versions, weights, gate history, rollouts."),
    "promote": ("mlops.commands.promote", "Resume a paused rollout."),
    "rollback": ("mlops.commands.rollback", "Roll a rollout back now."),
    "unlock": ("mlops.commands.unlock", "Release a stale workspace lock."),
    "drift": ("mlops.commands.drift", "Feature drift of data against the training baseline."),
    "watch": ("mlops.commands.watch", "Watch live drift and outside changes; run on_drift."),
    "policy": ("mlops.commands.policy", "SRE policy rules over plans."),
    "registry": ("mlops.commands.registry", "Registry contents with metadata."),
    "serve": ("mlops.commands.serve", "Run the mlops engine in the foreground."),
    "down": ("mlops.commands.down", "Stop the local target's processes."),
    "manifests": ("mlops.commands.manifests", "Kubernetes objects the kubernetes target applies."),
}


class LazyGroup(click.Group):
    """A click group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (module, _) in COMMANDS.items() if _module_exists(module))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None or not _module_exists(entry[0]):
            return None
        module = importlib.import_module(entry[0])
        command = module.command
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(module: str) -> bool:
    # Cheap existence check that does not import the module.
    return importlib.util.find_spec(module) is not None


class MlopsContext:
    """Options shared by every command."""

    def __init__(self, debug: bool, workspace: str | None) -> None:
        self.debug = debug
        self.workspace = workspace


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Example:\n\n  mlops validate specs/ && mlops plan specs/ -o plans/release.json",
)
@click.version_option(__version__, "--version", prog_name="mlops")
@click.option("--debug", is_flag=True, envvar="MLOPS_DEBUG", help="Show tracebacks for errors.")
@click.option(
    "-C",
    "--workspace",
    type=click.Path(file_okay=False),
    default=None,
    help="Workspace directory (default: nearest parent with mlops.yaml, else the current one).",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool, workspace: str | None) -> None:
    """mlops: declare model deployments in YAML; plan and apply them safely.

    \b
    Typical flow:
      mlops validate specs/         check every spec
      mlops plan specs/ -o p.json   diff against live state, save the plan
      mlops apply p.json            register, conformance-test, canary, promote
      mlops status                  what is serving now
    """
    ctx.obj = MlopsContext(debug=debug, workspace=workspace)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: maps MlopsError to its exit code with one line on stderr."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:]) or bool(
        os.environ.get("MLOPS_DEBUG")
    )
    try:
        # Without standalone mode, click returns ctx.exit(code) as a value instead of exiting.
        code = cli.main(args=argv, prog_name="mlops", standalone_mode=False)
        if isinstance(code, int) and not isinstance(code, bool):
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1 if exc.exit_code == 2 else exc.exit_code)
    except errors.MlopsError as exc:
        if debug:
            raise
        click.echo(f"Error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:
        if debug:
            raise
        click.echo(
            f"Internal error: {type(exc).__name__}: {exc} (run with --debug for details)", err=True
        )
        sys.exit(1)


def run_context(ctx: click.Context) -> MlopsContext:
    obj: Any = ctx.find_root().obj
    assert isinstance(obj, MlopsContext)
    return obj


if __name__ == "__main__":
    # Run the package's copy of this module so commands and root share one MlopsContext class.
    from mlops.cli import main as package_main

    package_main()
