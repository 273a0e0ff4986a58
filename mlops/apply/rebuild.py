"""The spec fields the registry records, rebuilt from a register payload.

Apply reads only the plan, and the register payload carries all of it: artifact, checksum
pin, signature, baseline and validation set.
"""

from __future__ import annotations

from typing import Any

from mlops.plan import types as t
from mlops.spec import models as spec


def deployment_for(model: str, register: t.RegisterPayload) -> spec.ModelDeployment:
    """The deployment the registry records for `model` at `register.semver`."""
    section: dict[str, Any] = {
        "version": register.semver,
        "artifact": register.artifact,
        "sha256": register.sha256,
        "signature": register.signature,
        "baseline": register.baseline,
    }
    if register.validation is not None:
        section["validation"] = register.validation.model_dump()
    return spec.ModelDeployment.model_validate(
        {
            "apiVersion": spec.API_VERSION,
            "kind": spec.KIND,
            "metadata": {"name": model},
            "spec": {"model": section},
        }
    )
