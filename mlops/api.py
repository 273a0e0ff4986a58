"""The one place that wires layers together: plan(), apply(), status(), drift(), ...

The CLI parses arguments and renders; everything it does goes through a function here.
Heavy providers are imported inside functions, so importing this module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlops.state.models import RegistryModel


def registry_list(workspace: str | None = None) -> dict[str, RegistryModel]:
    """Every model in the registry with its ready versions and aliases (one batched read)."""
    from mlops import workspace as ws_mod
    from mlops.providers import factory

    return factory.registry(ws_mod.open_workspace(workspace)).refresh()


def registry_show(
    name: str, version: str | None = None, workspace: str | None = None
) -> RegistryModel:
    """One model; with `version`, only that version (aliases kept). RegistryError if absent."""
    from mlops import errors
    from mlops import workspace as ws_mod
    from mlops.providers import factory, mlflow_tags

    mlflow_tags.check_name(name)
    if version is not None:
        mlflow_tags.check_semver(version)
    found = factory.registry(ws_mod.open_workspace(workspace)).refresh([name]).get(name)
    if found is None:
        raise errors.RegistryError(f"model {name!r} is not registered")
    if version is None:
        return found
    if version not in found.versions:
        raise errors.RegistryError(f"{name}@{version} is not registered")
    return found.model_copy(update={"versions": {version: found.versions[version]}})


# --- policy and drift -------------------------------------------------------------------------
