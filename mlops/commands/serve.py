"""`mlops serve`: run the engine in the foreground.

The engine (onnxruntime, uvicorn) is imported inside the command so `mlops --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from mlops import cli, errors
from mlops import workspace as workspace_mod


@click.command(
    "serve",
    epilog=(
        "Example (the repository `mlops apply` staged in this workspace):\n\n"
        "\b\n"
        "  mlops serve --repository .mlops/repository --port 8480 --replicas 2\n"
        "  curl -s localhost:8480/v2/health/ready\n\n"
        "A repository holds NAME/VERSION/model.onnx with its settings.json (docs/engine.md); "
        "a directory of bare .onnx files such as models/ is not one."
    ),
)
@click.option(
    "--repository",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model repository: NAME/VERSION/model.onnx + settings.json "
    "(default: .mlops/repository in the workspace).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True,
    help="Address of the inference port (a non-loopback address is reachable from the network).",
)  # fmt: skip
@click.option("--port", type=click.IntRange(1, 65535), default=8480, show_default=True)
@click.option(
    "--replicas", type=click.IntRange(1, 64), default=1, show_default=True,
    help="Worker processes sharing --port.",
)  # fmt: skip
@click.option(
    "--admin-port", type=click.IntRange(1, 65535), default=None,
    help="Worker i also listens on ADMIN_PORT + i (default: a port the kernel picks for each "
    "worker, published in STATE_DIR/worker-<i>.json).",
)  # fmt: skip
@click.option(
    "--supervise/--no-supervise", default=False, show_default=True,
    help="Run workers under a supervisor even for one replica, so that the worker count can "
    "change live (docs/engine.md).",
)  # fmt: skip
@click.option(
    "--admin-host", default="127.0.0.1", show_default=True,
    help="Address of the admin ports (load, unload, routing); loopback unless you mean it.",
)  # fmt: skip
@click.option(
    "--admin-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    envvar="MLOPS_ADMIN_TOKEN_FILE",
    help="File (mode 0600) with the token admin calls must send as 'Authorization: Bearer'.",
)  # fmt: skip
@click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Where workers write worker-<i>.json (default: .mlops/engine in the workspace).",
)  # fmt: skip
@click.option(
    "--max-body-bytes", type=click.IntRange(1), default=64 << 20, show_default=True,
    help="Larger request bodies get 413.",
)  # fmt: skip
@click.option(
    "--intra-op-threads", type=click.IntRange(1), default=1, show_default=True,
    help="onnxruntime threads inside one model run.",
)  # fmt: skip
@click.option(
    "--inference-threads", type=click.IntRange(0), default=0,
    help="Model runs in parallel per worker (default: one per CPU core).",
)  # fmt: skip
@click.option(
    "--load-all/--no-load-all", default=True, show_default=True,
    help="Load every version in the repository at start-up, or wait for load requests.",
)  # fmt: skip
@click.option(
    "--sample-rate", type=click.FloatRange(0, 1), default=0.05, show_default=True,
    help="Share of requests whose inputs are sampled for live drift (0: none).",
)  # fmt: skip
@click.option(
    "--sample-rows", type=click.IntRange(1, 1 << 20), default=1024, show_default=True,
    help="Sampled rows kept per version (in memory only).",
)  # fmt: skip
@click.option(
    "--sample-max-bytes", type=click.IntRange(1, 1 << 30), default=8 << 20, show_default=True,
    help="Memory bound of one version's samples.",
)  # fmt: skip
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning",
    show_default=True,
)  # fmt: skip
@click.pass_context
def command(
    ctx: click.Context,
    repository: Path | None,
    host: str,
    port: int,
    replicas: int,
    admin_port: int | None,
    supervise: bool,
    admin_host: str,
    admin_token_file: Path | None,
    state_dir: Path | None,
    max_body_bytes: int,
    intra_op_threads: int,
    inference_threads: int,
    load_all: bool,
    log_level: str,
    sample_rate: float,
    sample_rows: int,
    sample_max_bytes: int,
) -> None:
    """Run the mlops engine (V2 inference protocol) in the foreground until SIGTERM."""
    workspace = Path(cli.run_context(ctx).workspace or ".")
    if repository is not None and not repository.is_dir():
        # An explicit repository that is missing is a typo, not an empty engine.
        raise errors.UsageError(f"model repository {str(repository)!r} is not a directory")
    for what, address in (("--host", host), ("--admin-host", admin_host)):
        if not workspace_mod.is_loopback(address):
            click.echo(f"Warning: {workspace_mod.exposure_warning(what, address)}", err=True)
    if admin_token_file is not None:
        from mlops.serving import config as serve_config

        serve_config.read_admin_token(admin_token_file)  # a bad file fails here, in one line
    from mlops import serving

    config = serving.ServeConfig(
        repository=repository or workspace / ".mlops" / "repository",
        host=host,
        port=port,
        replicas=replicas,
        admin_port=admin_port,
        supervise=supervise,
        admin_host=admin_host,
        admin_token_file=None if admin_token_file is None else admin_token_file.resolve(),
        state_dir=state_dir or workspace / ".mlops" / "engine",
        max_body_bytes=max_body_bytes,
        intra_op_threads=intra_op_threads,
        inference_threads=inference_threads,
        load_all=load_all,
        log_level=log_level,
        sample_rate=sample_rate,
        sample_rows=sample_rows,
        sample_max_bytes=sample_max_bytes,
    )
    code = serving.serve(config)
    if code:
        ctx.exit(code)
