"""`mlops manifests [PATH...] [-o DIR]`: the Kubernetes objects and Triton config.pbtxt that
the kubernetes target would apply for each spec, built by the same code that applies them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mlops import api, cli, errors, workspace

EPILOG = """\b
Examples:
  mlops manifests                          every spec under specs/, YAML on stdout
  mlops manifests specs/fraud-scorer.yaml | kubectl apply --dry-run=server -f -
  mlops manifests -o deploy/               deploy/NAME/*.yaml + deploy/NAME/config.pbtxt
  mlops manifests --rbac | kubectl apply -f -   the controller's ServiceAccount, Role, RoleBinding
  mlops manifests --model-version 3 --image registry.example.com/fraud-scorer@sha256:...
                                           a version not registered or built yet

Pods run the version's own image by digest (recorded by apply when mlops.yaml has images:).
Cluster settings come from mlops.yaml `kubernetes` (namespace, gateway_ref, engine, image,
hostnames, accelerator_label; docs/kubernetes.md). The route sends all traffic to the spec's
version.
"""


@click.command(epilog=EPILOG, short_help="Kubernetes objects the kubernetes target applies.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Write one file per object under DIR/NAME/ (inside the workspace) instead of stdout.",
)  # fmt: skip
@click.option(
    "--engine", type=click.Choice(["triton", "mlops"]), default=None,
    help="Serving engine: the mlops engine (default) or NVIDIA Triton.",
)  # fmt: skip
@click.option(
    "--rbac", is_flag=True, default=False,
    help="Print the controller's ServiceAccount, Role and RoleBinding (its namespace only, no "
    "wildcards) instead of the model objects.",
)  # fmt: skip
@click.option(
    "--image", default=None, metavar="REF@sha256:...",
    help="The version's image by digest, for a version whose image is not recorded yet.",
)  # fmt: skip
@click.option(
    "--model-version", type=click.IntRange(1), default=None,
    help="Registry integer version to use for a version that is not registered yet.",
)  # fmt: skip
@click.pass_context
def command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    out: Path | None,
    engine: str | None,
    model_version: int | None,
    image: str | None,
    rbac: bool,
) -> None:
    """Print (or write) the Deployment, Service, ScaledObject, ConfigMap and HTTPRoute of each
    spec, or with --rbac the controller's least-privilege Role."""
    run = cli.run_context(ctx)
    if rbac:
        if paths or out is not None or engine or model_version or image:
            raise errors.UsageError(
                "--rbac takes no paths, -o, --engine, --model-version or --image"
            )
        objects, note = api.controller_rbac(workspace=run.workspace)
        if note:
            click.echo(f"Note: {note}", err=True)
        click.echo(api.manifests_yaml(objects), nl=False)
        return
    rendered = api.manifests(
        list(paths),
        workspace=run.workspace,
        engine=engine,
        model_version=model_version,
        image=image,
    )
    if out is None:
        click.echo(
            api.manifests_yaml([obj for objs in rendered.values() for obj in objs]), nl=False
        )
        return
    ws = workspace.open_workspace(run.workspace)
    root = ws.inside(out if out.is_absolute() else Path.cwd() / out, what="output directory")
    written = 0
    for name, objects in rendered.items():
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        for obj in objects:
            (directory / f"{obj['kind'].lower()}.yaml").write_text(api.manifests_yaml([obj]))
            written += 1
            config = _triton_config(obj)
            if config is not None:
                (directory / "config.pbtxt").write_text(config)
    if not rendered:
        raise errors.UsageError("no specs found")
    click.echo(f"wrote {written} objects for {len(rendered)} deployment(s) under {root}")


def _triton_config(obj: dict[str, Any]) -> str | None:
    if obj["kind"] != "ConfigMap":
        return None
    text = obj.get("data", {}).get("config.pbtxt")
    return text if isinstance(text, str) else None
