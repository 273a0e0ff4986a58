"""Refresh: the only I/O before planning. One batched read per provider, never one per model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mlops import errors
from mlops.providers import base
from mlops.state import models as state


def refresh(
    registry: base.Registry,
    runtime: base.Runtime | None,
    names: Sequence[str],
    last_applied: Mapping[str, state.AppliedRecord],
    *,
    traffic_rate: Mapping[str, float] | None = None,
    images: base.Images | None = None,
    image_versions: Mapping[str, tuple[str, str | None]] | None = None,
) -> state.LiveState:
    """Snapshot registry, runtime and traffic for `names`.

    A runtime that is absent or not reachable (the local engine is not started) is a normal
    state, planned as "nothing loaded"; an unreachable registry is an error, because without
    it nothing can be planned safely.

    `images` (workspaces with `images:` in mlops.yaml): the OCI registry is asked, in one
    pass, for the image of each version in `image_versions` (model -> (semver, the sha256 of
    the workspace's artifact file or None)); a registered version is looked up by the sha256
    the registry recorded. An unreachable OCI registry is an error too: without it the plan
    cannot say whether an image must be built.
    """
    wanted = sorted(set(names))
    try:
        models = registry.refresh(wanted)
    except errors.MlopsError:
        raise
    except Exception as exc:  # a provider bug or an unexpected client error
        raise errors.RegistryError(f"cannot read the model registry: {exc}") from exc
    reachable = runtime is not None and runtime.reachable()
    served: dict[str, state.RuntimeModel] = {}
    rates: dict[str, float] = {}
    if runtime is not None and reachable:
        try:
            served = runtime.refresh(wanted)
            # Runtimes that measure traffic themselves (the local engine) report it from the
            # same pass; others leave it to the caller's `traffic_rate`.
            rates = dict(runtime.request_rates)
        except errors.TransientError:
            # Stopped between the probe and the read: the same as not started.
            reachable = False
    keep = set(wanted)
    rates.update(traffic_rate or {})
    # Read whether or not it runs: an engine that does not answer is planned as not running,
    # like its models.
    engine = runtime.engine() if runtime is not None else None
    if engine is not None and not reachable:
        engine = state.EngineState()
    found = None
    if images is not None:
        chosen = {n: v for n, v in (image_versions or {}).items() if n in keep}
        found = _images(images, models, chosen)
    return state.LiveState(
        registry={n: m for n, m in sorted(models.items()) if n in keep},
        runtime={n: m for n, m in sorted(served.items()) if n in keep},
        runtime_reachable=reachable,
        engine=engine,
        traffic_rate={n: r for n, r in sorted(rates.items()) if n in keep},
        last_applied={n: r for n, r in sorted(last_applied.items())},
        images=found,
    )


def _images(
    images: base.Images,
    models: Mapping[str, state.RegistryModel],
    versions: Mapping[str, tuple[str, str | None]],
) -> state.ImagesState:
    queries = []
    for name, (semver, local_sha256) in sorted(versions.items()):
        registered = models.get(name)
        version = registered.versions.get(semver) if registered is not None else None
        sha256 = version.sha256 if version is not None else local_sha256
        queries.append(base.ImageQuery(model=name, semver=semver, sha256=sha256))
    try:
        found = images.lookup(queries)
    except errors.MlopsError:
        raise
    except Exception as exc:  # a provider bug or an unexpected client error
        raise errors.RegistryError(f"cannot read the image registry: {exc}") from exc
    return state.ImagesState(
        base=images.base, repository=images.repository, models=dict(sorted(found.items()))
    )
