"""Exception hierarchy: each class says how the caller should react (exit code, retry or stop)."""

from __future__ import annotations


class MlopsError(Exception):
    """Root of every error mlops reports to a user. `exit_code` is what the CLI exits with."""

    exit_code: int = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


class UsageError(MlopsError):
    """A bad flag, path or argument."""


class SpecError(MlopsError):
    """One or more spec files are invalid. `problems` holds every problem found."""

    def __init__(self, message: str, problems: list[object] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class ConfigError(MlopsError):
    """`mlops.yaml` is invalid."""


class RegistryError(MlopsError):
    """The model registry refused an operation or holds inconsistent data."""


class PlanError(MlopsError):
    """The specs cannot be turned into a safe plan (e.g. a breaking change with a minor bump)."""


class StalePlanError(MlopsError):
    """Live state changed since the plan was made; apply refuses it and changes nothing."""


class LockHeldError(MlopsError):
    """Another apply holds the workspace lock."""


class RolledBackError(MlopsError):
    """A gate failed and the rollout was rolled back automatically."""

    exit_code = 3


class PausedError(MlopsError):
    """A gate stayed inconclusive at the end of a hold; the rollout waits for promote/rollback."""

    exit_code = 4


class TransientError(MlopsError):
    """Worth retrying: a backend was briefly unreachable or busy."""


class PermanentError(MlopsError):
    """Retrying will not help: stop and report."""


class ArtifactError(PermanentError):
    """An artifact is missing, not ONNX, escapes the workspace or fails its checksum: the
    file has to change before anything can succeed."""


class SignatureMismatchError(ArtifactError):
    """The artifact's graph does not match the declared signature."""


class VersionConflictError(RegistryError, PermanentError):
    """The semver is already registered with other bytes (released versions are immutable)."""
