"""The mlops engine: a lean V2-protocol inference server on onnxruntime.

Only this package imports onnxruntime and the HTTP server stack; `serve` is the entry point
used by `mlops serve`.
"""

from __future__ import annotations

from mlops.serving.config import ServeConfig


def serve(config: ServeConfig) -> int:
    """Run the engine in the foreground until SIGTERM/SIGINT; returns the exit code."""
    if config.replicas <= 1 and not config.supervise:
        from mlops.serving import worker

        worker.run(config, 0)
        return 0
    from mlops.serving import supervisor

    return supervisor.run(config)


__all__ = ["ServeConfig", "serve"]
