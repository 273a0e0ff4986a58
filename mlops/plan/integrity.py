"""Served bytes against the registry. Released versions are immutable: a loaded version whose
artifact differs from the sha256 the registry recorded was changed outside mlops (a staged
file replaced by hand), and the plan repairs it by staging the registered bytes again and
reloading them."""

from __future__ import annotations

from dataclasses import dataclass

from mlops.core import Address
from mlops.plan import types as t
from mlops.state import models as state


@dataclass(frozen=True)
class Mismatch:
    semver: str
    registered: str  # the registry's sha256
    served: list[str]  # what the runtime serves (more than one: its replicas disagree)

    @property
    def served_text(self) -> str:
        return ", ".join(self.served)

    def reason(self) -> str:
        return (
            f"{self.semver} serves an artifact with sha256 {self.served_text}, not the "
            f"registered {self.registered}: stage the registered artifact again and reload it"
        )


def mismatch(
    registry: state.RegistryModel, runtime: state.RuntimeModel | None, semver: str
) -> Mismatch | None:
    """The mismatch of one loaded version, or None (matches, not loaded, or nothing to compare:
    not registered, or a runtime that does not report digests)."""
    if runtime is None or semver not in runtime.loaded:
        return None
    registered = registry.versions.get(semver)
    served = runtime.served_sha256.get(semver)
    if registered is None or not served or served == [registered.sha256]:
        return None
    return Mismatch(semver, registered.sha256, sorted(served))


def detect(live: state.LiveState) -> list[t.OutsideChange]:
    """One outside change per loaded version whose served bytes are not the registered ones."""
    changes: list[t.OutsideChange] = []
    for name, runtime in sorted(live.runtime.items()):
        registry = live.registry.get(name)
        if registry is None:
            continue
        for semver in sorted(runtime.loaded):
            found = mismatch(registry, runtime, semver)
            if found is not None:
                changes.append(
                    t.OutsideChange(
                        address=Address.version(name, semver),
                        field="sha256",
                        expected=found.registered,
                        actual=found.served[0] if len(found.served) == 1 else found.served,
                    )
                )
    return changes
