"""The model registry on MLflow: semver versions with checksum, signature, baseline, stats.

Layout: one MLflow run per registration holds the artifacts (`model/model.onnx`,
`model/feature_stats.json`); the model version points at that directory and carries the
metadata as tags (`mlflow_tags`). Lookup by semver is one call through the alias
`semver-X_Y_Z`. A version is created with `mlops.state=pending` and flipped to `ready` only
after its semver alias is set; readers ignore pending versions and a failure deletes them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from mlops import errors, gcpause, pids
from mlops.providers.mlflow import artifact_refs, onnx_artifact, tags
from mlops.providers.mlflow import reader as mlflow_reader
from mlops.providers.mlflow import session as mlflow_session
from mlops.spec import models as spec
from mlops.state import models as state

STALE_PENDING_SECONDS = 600.0  # a pending version this old belongs to a dead registration
T = TypeVar("T")


class MlflowRegistry:
    """`Registry` over an MLflow tracking/registry URI (sqlite, a server, any backend)."""

    def __init__(
        self, tracking_uri: str, artifact_root: Path, *, workspace: Path | None = None
    ) -> None:
        self.session = mlflow_session.Session(tracking_uri, artifact_root)
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.workspace = workspace  # when set, local artifacts must stay inside it
        # Reads go through a reader that needs no MLflow import when one fits this registry
        # (mlflow_reader); chosen on first use, None once only MLflow's client can read it.
        self._reader: mlflow_reader.Reader | None = None
        self._reader_chosen = False

    def initialise(self) -> None:
        """Connect now: a local sqlite registry is created and migrated (reads never create
        it; writes do on first use). A server is only contacted."""
        _ = self.session.client

    # -- reads -------------------------------------------------------------------------

    def refresh(self, names: Sequence[str] | None = None) -> dict[str, state.RegistryModel]:
        wanted = None if names is None else {tags.check_name(n) for n in names}
        asked = None if wanted is None else sorted(wanted)
        versions: dict[str, list[state.RegistryVersion]] = {}
        # Every row is materialised at once and all of it is kept: nothing to collect.
        with gcpause.paused():
            fast = self._fast(lambda reader: reader.read(asked))
            if not fast and asked is not None and self._own_registry():
                # Through MLflow's client the workspace's own registry is read whole, which is
                # cheaper there: MLflow parses `name IN (...)` filters with sqlparse and its
                # ORM work is per row, so the filters only add cost when every row is ours.
                asked = None
            entities = fast[0].versions if fast else self.session.all_versions(asked)
            for entity in entities:
                if wanted is not None and entity.name not in wanted:
                    continue
                decoded = tags.decode(entity)
                if decoded is not None:
                    versions.setdefault(decoded.name, []).append(decoded)
            # Aliases only of models that have versions here: nothing else can be planned.
            aliases = {}
            if fast:
                aliases = fast[0].aliases
            elif versions:
                aliases = self.session.all_aliases(None if asked is None else sorted(versions))
        return {
            name: tags.build_model(name, found, aliases.get(name, {}))
            for name, found in sorted(versions.items())
            if wanted is None or name in wanted
        }

    def get_version(self, name: str, semver: str) -> state.RegistryVersion | None:
        entity = self._entity(name, semver)
        return None if entity is None else tags.decode(entity)

    def artifact_path(self, name: str, semver: str) -> Path:
        version = self._require(name, semver)
        path = self._fetch(version, tags.MODEL_FILE)
        if onnx_artifact.sha256_file(path) != version.sha256 and self.session.remote:
            path = self._fetch(version, tags.MODEL_FILE, fresh=True)  # a stale download
        if onnx_artifact.sha256_file(path) != version.sha256:
            raise errors.ArtifactError(
                f"stored artifact of {name}@{semver} does not match its sha256 {version.sha256}"
            )
        return path

    def training_stats(self, name: str, semver: str) -> list[state.FeatureStats]:
        entity = self._entity(name, semver)
        version = None if entity is None else tags.decode(entity)
        if version is None:
            raise errors.RegistryError(f"{name}@{semver} is not registered")
        if tags.STATS not in tags.tags_of(entity):
            return []
        raw = self._fetch(version, tags.STATS_FILE).read_text(encoding="utf-8")
        try:
            return [state.FeatureStats.model_validate(item) for item in json.loads(raw)]
        except ValueError as exc:
            raise errors.RegistryError(
                f"feature stats of {name}@{semver} are corrupt: {exc}"
            ) from None

    # -- rollout state -----------------------------------------------------------------

    def set_alias(self, name: str, alias: str, semver: str) -> None:
        version = self._require(name, semver)
        self.session.call(
            "set alias",
            "set_registered_model_alias",
            name,
            tags.check_alias(alias),
            version.registry_version,
        )

    def delete_alias(self, name: str, alias: str) -> None:
        self.session.call_missing_ok(
            "delete alias",
            "delete_registered_model_alias",
            tags.check_name(name),
            tags.check_alias(alias),
        )

    def mark_rejected(self, name: str, semver: str, reason: str) -> None:
        version = self._require(name, semver)
        self._set_tag(version, tags.REJECTED, tags.clip(reason or "rejected"))

    def record_conformance(self, name: str, semver: str, result: Mapping[str, Any]) -> None:
        version = self._require(name, semver)
        self._set_tag(version, tags.CONFORMANCE, json.dumps(dict(result), sort_keys=True))

    def record_image(self, name: str, semver: str, digest: str, reference: str) -> None:
        """The reference first, the digest last: a version shows an image digest only once
        both are stored."""
        version = self._require(name, semver)
        values = tags.image_tags(digest, reference)
        self._set_tag(version, tags.IMAGE_REFERENCE, values[tags.IMAGE_REFERENCE])
        self._set_tag(version, tags.IMAGE_DIGEST, values[tags.IMAGE_DIGEST])

    # -- registration ------------------------------------------------------------------

    def register(
        self, deployment: spec.ModelDeployment, artifact: Path | str, validation: Path | None
    ) -> state.RegistryVersion:
        name = tags.check_name(deployment.name)
        model = deployment.spec.model
        semver = tags.check_semver(model.version)
        data = None
        if validation is not None:
            data = artifact_refs.local_path(validation, self.workspace, what="validation data")
        with tempfile.TemporaryDirectory(prefix="mlops-register-") as tmp:
            staged = Path(tmp) / tags.ARTIFACT_DIR
            staged.mkdir()
            # Everything is checked on a private copy before the registry is touched, so a
            # file changing underneath us cannot differ from what was hashed.
            copy = staged / tags.MODEL_FILE
            source = self._source_file(artifact)
            shutil.copyfile(source, copy)
            # Messages name what the user gave, never the private copy.
            shown = str(artifact) if _is_models_uri(artifact) else str(source)
            onnx_model = onnx_artifact.load_model(copy, shown=shown)
            sha256 = onnx_artifact.sha256_file(copy)
            if model.sha256 is not None and model.sha256 != sha256:
                raise errors.ArtifactError(
                    f"{name}@{semver}: artifact {shown!r} has sha256 {sha256}, "
                    f"the spec pins {model.sha256}"
                )
            onnx_artifact.check_signature(model.signature, onnx_artifact.signature_of(onnx_model))
            existing = self._settle_existing(name, semver, sha256)
            if existing is not None:
                return existing  # immutable: its statistics were recorded the first time
            if data is not None:
                self._write_stats(staged, data, model.signature)
            metadata = tags.version_tags(
                semver, sha256, model.signature, model.baseline, data is not None
            )
            return self._commit(name, semver, staged, metadata)

    def _source_file(self, artifact: Path | str) -> Path:
        text = str(artifact)
        if _is_models_uri(artifact):
            ref = artifact_refs.parse_models_uri(text)
            semver = self._resolve_ref(ref)
            return self.artifact_path(ref.name, semver)
        path = artifact_refs.local_path(artifact, self.workspace)
        if not path.is_file():
            raise errors.ArtifactError(f"artifact {text!r} does not exist or is not a file")
        return path

    def _resolve_ref(self, ref: artifact_refs.ModelsUri) -> str:
        """The semver a models:/ reference names (an alias, a semver or an MLflow number)."""
        alias = ref.alias
        if ref.version is not None and not ref.version.isdigit():
            return tags.check_semver(ref.version)
        entity = (
            self.session.by_alias(ref.name, tags.check_alias(alias))
            if alias is not None
            else self.session.call_missing_ok(
                "get version", "get_model_version", ref.name, ref.version
            )
        )
        decoded = None if entity is None else tags.decode(entity)
        if decoded is None:
            raise errors.ArtifactError(f"models:/{ref.name} reference names no registered version")
        return decoded.semver

    def _write_stats(self, staged: Path, validation: Path, signature: spec.Signature) -> None:
        from mlops import datasets  # numpy and pandas only when there is data to read

        inputs, _ = datasets.load_validation(validation, [t.name for t in signature.inputs])
        stats = [s.model_dump(mode="json") for s in datasets.feature_stats(inputs)]
        (staged / tags.STATS_FILE).write_text(json.dumps(stats), encoding="utf-8")

    def _settle_existing(self, name: str, semver: str, sha256: str) -> state.RegistryVersion | None:
        """Immutability: the same bytes again are a no-op, different bytes an error. Pending
        leftovers of a dead registration are removed; a live one is reported as busy."""
        for entity in self.session.versions_with_semver(name, semver):
            decoded = tags.decode(entity)
            if decoded is not None:
                if decoded.sha256 == sha256:
                    return decoded
                raise errors.VersionConflictError(
                    f"{name}@{semver} is already registered with sha256 {decoded.sha256}; "
                    f"released versions are immutable (this artifact is {sha256}): bump the version"
                )
            if not self._is_stale(entity):
                raise errors.TransientError(f"{name}@{semver} is being registered right now")
            self._discard(name, str(entity.version), entity.run_id)
        return None

    def _is_stale(self, entity: Any) -> bool:
        host, _, pid = tags.pending_owner(entity).rpartition(":")
        if host == socket.gethostname() and pid.isdigit():
            # Registrations in one process run one at a time: our own pid means a leftover.
            return int(pid) == os.getpid() or not pids.pid_running(int(pid))
        age = time.time() - (entity.creation_timestamp or 0) / 1000
        return age > STALE_PENDING_SECONDS

    def _commit(
        self, name: str, semver: str, staged: Path, metadata: dict[str, str]
    ) -> state.RegistryVersion:
        self.session.ensure_model(name)
        run_id, source = self.session.upload(name, semver, staged)
        pending = {
            **metadata,
            tags.STATE: f"{tags.PENDING}{socket.gethostname()}:{os.getpid()}",
        }
        number: str | None = None
        try:
            created = self.session.call(
                "create version", "create_model_version", name, source, run_id=run_id, tags=pending
            )
            number = str(created.version)
            # Two writers of one semver (say, two workspaces on one server): the lower version
            # number wins, the other backs out, and its retry finds the winner.
            if any(
                int(rival.version) < int(number)
                for rival in self.session.versions_with_semver(name, semver)
            ):
                raise errors.TransientError(
                    f"{name}@{semver} is being registered concurrently; retry"
                )
            self.session.call(
                "set semver alias",
                "set_registered_model_alias",
                name,
                tags.semver_alias(semver),
                number,
            )
            self.session.call(
                "mark ready", "set_model_version_tag", name, number, tags.STATE, tags.READY
            )
        except BaseException:
            self._discard(name, number, run_id)
            raise
        version = tags.decode(created, {**metadata, tags.STATE: tags.READY})
        assert version is not None  # the tags say ready: decoding cannot skip it
        return version

    def _discard(self, name: str, number: str | None, run_id: str | None) -> None:
        """Best effort: remove a half-made version and its run. Failing here leaves a pending
        version, which readers ignore and the next registration of that semver removes."""
        try:
            if number is not None:
                self.session.call_missing_ok("discard", "delete_model_version", name, number)
            if run_id:
                self.session.delete_run(run_id)
        except errors.MlopsError:
            pass

    # -- helpers -----------------------------------------------------------------------

    def _own_registry(self) -> bool:
        """The default registry: a sqlite file in this workspace's `.mlops/`, used by it alone."""
        db = self.session.sqlite_file
        if db is None or self.workspace is None:
            return False
        own = Path(os.path.realpath(self.workspace / ".mlops"))
        return own in Path(os.path.realpath(db)).parents

    def _entity(self, name: str, semver: str) -> Any:
        name, alias = tags.check_name(name), tags.semver_alias(semver)
        fast = self._fast(lambda reader: reader.by_alias(name, alias))
        return fast[0] if fast else self.session.by_alias(name, alias)

    def _fast(self, read: Callable[[mlflow_reader.Reader], T]) -> tuple[T] | None:
        """`(result,)` of a read without MLflow's client (seconds of import and store
        start-up saved), or None when only the client can read this registry."""
        if not self._reader_chosen:
            self._reader = mlflow_reader.for_uri(
                self.tracking_uri, self.session.sqlite_file, timeout=self.session.timeout
            )
            self._reader_chosen = True
        if self._reader is None:
            return None
        try:
            return (read(self._reader),)
        except mlflow_reader.Unsupported:
            self._reader = None  # remembered: this registry is read through the client
            return None

    def _require(self, name: str, semver: str) -> state.RegistryVersion:
        version = self.get_version(name, semver)
        if version is None:
            raise errors.RegistryError(f"{name}@{semver} is not registered")
        return version

    def _set_tag(self, version: state.RegistryVersion, key: str, value: str) -> None:
        self.session.call(
            "set tag", "set_model_version_tag", version.name, version.registry_version, key, value
        )

    def _fetch(
        self, version: state.RegistryVersion, file_name: str, *, fresh: bool = False
    ) -> Path:
        source = version.artifact_uri.rsplit("/", 1)[0]
        artifact_refs.check_stored_source(source, self.session.local_artifact_root)
        # Downloads are cached per MLflow version number: a semver is immutable, and a
        # version deleted and re-made by hand gets a new number.
        key = f"{version.name}/{version.semver}/{version.registry_version}"
        return self.session.fetch(source, file_name, key, fresh=fresh)


def _is_models_uri(artifact: Path | str) -> bool:
    return str(artifact).startswith(artifact_refs.MODELS_SCHEME)
