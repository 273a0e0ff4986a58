"""The kubernetes target: `runtime.KubernetesRuntime` behind `base.Runtime`, the manifests it
renders (`manifests`, `route`, `triton`) and the cluster it applies them to (`cluster`).

The public names of `runtime` are re-exported: this package has the name the single module
`mlops.providers.kubernetes` had before the split, and callers of that module keep working.
The client library itself is imported only when a cluster is reached (`cluster`).
"""

from mlops.providers.kubernetes.runtime import (
    RETIRED_ENV,
    KubernetesRuntime,
    options_for,
    render_manifests,
    render_workspace,
    to_yaml,
    version_input,
)

__all__ = [
    "RETIRED_ENV",
    "KubernetesRuntime",
    "options_for",
    "render_manifests",
    "render_workspace",
    "to_yaml",
    "version_input",
]
