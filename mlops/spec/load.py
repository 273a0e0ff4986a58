"""Spec files -> validated `ModelDeployment`s, with every problem reported as `file:line:col`.

`load_specs` reads files and directories, validates each document, resolves artifact and
validation paths inside the workspace and refuses duplicate names. It collects every problem
before raising one `SpecError`, so a user fixes a file in one pass (as Terraform's tfdiags).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from mlops import errors, gcpause
from mlops.spec import models as spec
from mlops.spec import problems as prob
from mlops.spec import refs, safeyaml
from mlops.spec.paths import resolve_inside

Problem = prob.Problem
SPEC_SUFFIXES = (".yaml", ".yml")
MODELS_URI = "models:/"


@dataclass(frozen=True)
class LoadedSpec:
    """One validated deployment and where it came from."""

    deployment: spec.ModelDeployment
    path: Path
    artifact_path: Path | None  # resolved inside the workspace; None for a models:/ URI
    validation_path: Path | None
    positions: safeyaml.Positions

    @property
    def name(self) -> str:
        return self.deployment.name

    def where(self, *field: str | int) -> str:
        """`file:line:col` of a field, e.g. `loaded.where("spec", "model", "version")`."""
        line, column = self.positions.of(tuple(field))
        return f"{self.path}:{line}:{column}"


class ConfigProblems(errors.ConfigError):
    """`mlops.yaml` is invalid; `problems` holds every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(_summary(problems))
        self.problems = problems


def load_specs(
    paths: Sequence[str | Path], workspace_root: Path, *, check_files: bool = False
) -> list[LoadedSpec]:
    """Load every spec under `paths` (files or directories), sorted by name.

    Relative paths are relative to the current directory when it is inside the workspace,
    else to `workspace_root` (so `mlops -C WS validate specs/` reads WS/specs). Raises
    `errors.SpecError` whose `problems` lists every `Problem` found. With `check_files`,
    artifact and validation files must also exist.
    """
    found: list[Problem] = []
    loaded: list[LoadedSpec] = []
    with gcpause.paused():  # everything allocated here stays alive: nothing to collect
        for file in _spec_files(paths, workspace_root, found):
            loaded.extend(_load_file(file, workspace_root, check_files, found))
    _check_unique(loaded, found)
    if found:
        every: list[object] = [*sorted(found)]
        raise errors.SpecError(_summary(found), every)
    return sorted(loaded, key=lambda item: item.name)


def load_workspace_config(path: Path) -> spec.WorkspaceConfig:
    """Read `mlops.yaml`; an empty file means every default."""
    result = safeyaml.read_file(path)
    found = [prob.from_yaml(str(path), p) for p in result.problems]
    documents = [d for d in result.documents if d.data is not None]
    config = spec.WorkspaceConfig()
    if len(documents) > 1:
        line = documents[1].start[0]
        found.append(Problem(str(path), line, 1, "", "mlops.yaml holds one YAML document only"))
    elif documents and not found:
        document = documents[0]
        if not isinstance(document.data, dict):
            found.append(_not_mapping(str(path), document))
        else:
            try:
                config = spec.WorkspaceConfig.model_validate(document.data)
            except ValidationError as exc:
                found.extend(
                    prob.from_validation(str(path), exc, document.positions, spec.WorkspaceConfig)
                )
    if found:
        raise ConfigProblems(sorted(found))
    return config


def spec_digest(loaded: Iterable[LoadedSpec]) -> str:
    """sha256 of the canonical JSON of every deployment, independent of file and load order."""
    canonical = {item.name: item.deployment.model_dump(mode="json") for item in loaded}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _summary(found: list[Problem]) -> str:
    # The message is every problem line: commands other than `validate` print it as is.
    return "\n".join(str(p) for p in sorted(found))


def _base_dir(root: Path) -> Path | None:
    """Where relative PATHs start: None (the current directory) when it is inside the
    workspace, else the workspace root, so `mlops -C WS validate specs/` means WS/specs."""
    cwd, real_root = Path(os.path.realpath(Path.cwd())), Path(os.path.realpath(root))
    return None if cwd == real_root or real_root in cwd.parents else real_root


def _spec_files(paths: Sequence[str | Path], root: Path, found: list[Problem]) -> list[Path]:
    files: list[Path] = []
    base = _base_dir(root)
    for raw in paths:
        path = Path(raw)
        if base is not None and not path.is_absolute():
            # Shown relative to the current directory, so each message names a real file.
            path = Path(os.path.relpath(base / path))
        if path.is_dir():
            inside = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in SPEC_SUFFIXES
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not inside:
                found.append(Problem(str(path), 1, 1, "", "no spec files (*.yaml, *.yml) here"))
            files.extend(inside)
        elif path.exists():
            files.append(path)
        else:
            found.append(Problem(str(path), 1, 1, "", "no such file or directory"))
    unique: dict[str, Path] = {}
    for file in files:
        unique.setdefault(os.path.realpath(file), file)
    return list(unique.values())


def _not_mapping(file: str, document: safeyaml.Document) -> Problem:
    kind = type(document.data).__name__
    line, column = document.start
    return Problem(file, line, column, "", f"a document must be a mapping, not {kind}")


def _load_file(path: Path, root: Path, check_files: bool, found: list[Problem]) -> list[LoadedSpec]:
    file = str(path)
    result = safeyaml.read_file(path)
    found.extend(prob.from_yaml(file, p) for p in result.problems)
    documents = [d for d in result.documents if d.data is not None]
    if not documents and not result.problems:
        found.append(Problem(file, 1, 1, "", "file is empty (no YAML documents)"))
    if result.problems:
        return []  # the YAML itself is broken; model errors would only add noise
    loaded: list[LoadedSpec] = []
    for document in documents:
        if not isinstance(document.data, dict):
            found.append(_not_mapping(file, document))
            continue
        before = len(found)
        # Paths are checked even when the model is invalid, so one run reports everything.
        artifact, validation = _resolve_paths(
            document.data, path, root, document.positions, check_files, found
        )
        try:
            deployment = spec.ModelDeployment.model_validate(document.data)
        except ValidationError as exc:
            found.extend(prob.from_validation(file, exc, document.positions, spec.ModelDeployment))
            continue
        if len(found) == before:
            loaded.append(LoadedSpec(deployment, path, artifact, validation, document.positions))
    return loaded


def _resolve_paths(
    data: dict[str, object],
    path: Path,
    root: Path,
    positions: safeyaml.Positions,
    check_files: bool,
    found: list[Problem],
) -> tuple[Path | None, Path | None]:
    """Resolve artifact and validation data paths of a raw document (strings only)."""
    resolved: list[Path | None] = []
    for field in (("spec", "model", "artifact"), ("spec", "model", "validation", "data")):
        raw = _get(data, field)
        target: Path | None = None
        # Anything but a plain path (a URI, '#', NUL) is the model's one problem for the field.
        if isinstance(raw, str) and raw and refs.is_local(raw):
            target = _inside(raw, path, root, field, positions, found)
            if target is not None and check_files and not target.is_file():
                line, column = positions.of(field)
                message = f"{raw!r} does not exist ({target})"
                found.append(Problem(str(path), line, column, prob.field_path(field), message))
        resolved.append(target)
    return resolved[0], resolved[1]


def _get(data: object, field: tuple[str, ...]) -> object:
    for key in field:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _inside(
    raw: str,
    spec_file: Path,
    root: Path,
    field: tuple[str, ...],
    positions: safeyaml.Positions,
    found: list[Problem],
) -> Path | None:
    # Relative paths are relative to the spec file, whose own symlinks are not followed.
    base = Path(os.path.abspath(spec_file)).parent
    candidate = Path(raw) if Path(raw).is_absolute() else base / raw
    try:
        return resolve_inside(candidate, root, what=field[-1])
    except errors.MlopsError:
        line, column = positions.of(field)
        message = f"{raw!r} leads outside the workspace {root} (paths must stay inside it)"
        found.append(Problem(str(spec_file), line, column, prob.field_path(field), message))
        return None


def _check_unique(loaded: list[LoadedSpec], found: list[Problem]) -> None:
    first: dict[str, LoadedSpec] = {}
    for item in loaded:
        earlier = first.setdefault(item.name, item)
        if earlier is item:
            continue
        line, column = item.positions.of(("metadata", "name"))
        found.append(
            Problem(
                str(item.path),
                line,
                column,
                "metadata.name",
                f"duplicate name {item.name!r} (also in {earlier.where('metadata', 'name')})",
            )
        )
