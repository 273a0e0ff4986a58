"""Registry contract: the same assertions against MLflow on sqlite and a real `mlflow server`."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlops import datasets, errors
from mlops.providers.mlflow import onnx_artifact
from mlops.providers.mlflow.registry import MlflowRegistry
from mlops.state import models as state
from tests.registry import support

Name = Callable[[str], str]
MODEL = Path("models/model.onnx")
OTHER = Path("models/other.onnx")
VAL = Path("models/val.npz")


def raw_versions(registry: MlflowRegistry, name: str) -> list[Any]:
    """Every MLflow version of `name`, pending ones included (what mlops must never expose)."""
    return list(registry.session.all_versions([name]))


def nothing_registered(registry: MlflowRegistry, name: str) -> bool:
    return (
        not raw_versions(registry, name)
        and name not in registry.session.all_aliases()
        and name not in registry.refresh()
    )


def test_register_records_everything(registry: MlflowRegistry, ws: Path, name: Name) -> None:
    model = name("fraud")
    version = registry.register(support.deployment(model, "2.3.1"), MODEL, VAL)
    assert version.name == model and version.semver == "2.3.1"
    assert version.sha256 == onnx_artifact.sha256_file(ws / MODEL)
    assert version.signature == support.deployment(model, "2.3.1").spec.model.signature
    assert version.baseline.value == 0.94 and version.baseline.p99_ms == 15
    assert version.status is state.VersionStatus.REGISTERED
    assert registry.get_version(model, "2.3.1") == version
    stored = registry.artifact_path(model, "2.3.1")
    assert onnx_artifact.sha256_file(stored) == version.sha256
    assert not (ws / "mlruns").exists() and not Path("mlruns").exists()


def test_training_stats_round_trip(registry: MlflowRegistry, ws: Path, name: Name) -> None:
    model = name("stats")
    registry.register(support.deployment(model, "1.0.0"), MODEL, VAL)
    inputs, _ = datasets.load_validation(ws / VAL, ["input"])
    assert registry.training_stats(model, "1.0.0") == datasets.feature_stats(inputs)
    registry.register(support.deployment(model, "1.1.0"), MODEL, None)
    assert registry.training_stats(model, "1.1.0") == []


def test_semver_lookup_with_prerelease_and_build(registry: MlflowRegistry, name: Name) -> None:
    model = name("pre")
    registry.register(support.deployment(model, "1.0.0-rc.1+build.7"), MODEL, None)
    registry.register(support.deployment(model, "1.0.0"), OTHER, None)
    pre = registry.get_version(model, "1.0.0-rc.1+build.7")
    final = registry.get_version(model, "1.0.0")
    assert pre is not None and final is not None and pre.sha256 != final.sha256
    assert registry.get_version(model, "1.0.1") is None
    assert list(registry.refresh([model])[model].versions) == ["1.0.0-rc.1+build.7", "1.0.0"]


def test_same_semver_same_bytes_is_a_no_op(registry: MlflowRegistry, name: Name) -> None:
    model = name("same")
    first = registry.register(support.deployment(model, "1.0.0"), MODEL, VAL)
    again = registry.register(support.deployment(model, "1.0.0"), MODEL, VAL)
    assert again == first
    assert len(raw_versions(registry, model)) == 1


def test_released_versions_are_immutable(registry: MlflowRegistry, name: Name) -> None:
    model = name("immutable")
    first = registry.register(support.deployment(model, "1.0.0"), MODEL, None)
    with pytest.raises(errors.VersionConflictError, match="immutable"):
        registry.register(support.deployment(model, "1.0.0"), OTHER, None)
    assert registry.get_version(model, "1.0.0") == first
    assert len(raw_versions(registry, model)) == 1


def test_checksum_pin_must_match(registry: MlflowRegistry, ws: Path, name: Name) -> None:
    model = name("pin")
    good = onnx_artifact.sha256_file(ws / MODEL)
    with pytest.raises(errors.ArtifactError, match="pins"):
        registry.register(support.deployment(model, "1.0.0", sha256="0" * 64), MODEL, None)
    assert nothing_registered(registry, model)
    version = registry.register(support.deployment(model, "1.0.0", sha256=good), MODEL, None)
    assert version.semver == "1.0.0" and version.sha256 == good


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("this is not a model"), "not an ONNX model"),
        (lambda p: p.write_bytes(b""), "is empty, not an ONNX model"),
        (lambda p: p.write_bytes(_half(p.with_name("model.onnx").read_bytes())), "not an ONNX"),
        (lambda p: p.mkdir(), "does not exist or is not a file"),
    ],
    ids=["missing", "text", "empty", "truncated", "directory"],
)
def test_bad_artifacts_are_refused(
    registry: MlflowRegistry, ws: Path, name: Name, make: Callable[[Path], Any], message: str
) -> None:
    model = name("bad")
    make(ws / "models" / "bad.onnx")
    with pytest.raises(errors.ArtifactError, match=message) as refused:
        registry.register(support.deployment(model, "1.0.0"), Path("models/bad.onnx"), None)
    # The user's file, never the private copy the checks run on; permanent, not retryable.
    assert "models/bad.onnx" in refused.value.message
    assert "mlops-register" not in refused.value.message
    assert isinstance(refused.value, errors.PermanentError)
    assert nothing_registered(registry, model)


def _sig(**changes: Any) -> dict[str, Any]:
    sig: dict[str, Any] = json.loads(json.dumps(support.SIGNATURE))  # a deep copy
    for path, value in changes.items():
        kind, index, field = path.split("__")
        sig[kind][int(index)][field] = value
    return sig


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (_sig(inputs__0__name="features"), "input 'features': declared in the spec, missing"),
        (_sig(inputs__0__dtype="FP64"), "input 'input': dtype FP64 in the spec, FP32 in the model"),
        (_sig(inputs__0__shape=[-1, 30]), r"input 'input': shape \[-1, 30\] in the spec"),
        (_sig(outputs__1__shape=[-1, 2, 1]), "output 'probabilities': shape"),
        (
            {"inputs": support.SIGNATURE["inputs"], "outputs": support.SIGNATURE["outputs"][:1]},
            "output 'probabilities': in the model, not declared",
        ),
    ],
    ids=["missing-input", "dtype", "shape", "rank", "extra-output"],
)
def test_signature_mismatch_names_the_tensor(
    registry: MlflowRegistry, name: Name, signature: dict[str, Any], message: str
) -> None:
    model = name("sig")
    deployment = support.deployment(model, "1.0.0", signature=signature)
    with pytest.raises(errors.SignatureMismatchError, match=message):
        registry.register(deployment, MODEL, VAL)
    assert nothing_registered(registry, model)


ESCAPES = [
    "../outside.onnx",
    "models/../../outside.onnx",
    "{outside}",
    "models/link.onnx",
    "file:///etc/passwd",
    "file://{ws}/models/model.onnx",
    "models/model.onnx#/../../outside.onnx",
    "models/model.onnx?x=../../outside.onnx",
    "//proc/self/root/etc/passwd",
    "http://127.0.0.1:9/model.onnx",
    "models:/x/1#/../../etc",
    "models:/../../etc/passwd",
    "models:/x/%2e%2e",
    "models:/x/%252e%252e/y",
    "models:/x/1/../../y",
    "models:/x@stable?../../etc",
]


@pytest.mark.parametrize("ref", ESCAPES)
def test_escaping_artifact_references_are_refused(
    registry: MlflowRegistry, ws: Path, name: Name, ref: str
) -> None:
    outside = ws.parent / "outside.onnx"
    outside.write_bytes((ws / MODEL).read_bytes())
    (ws / "models" / "link.onnx").symlink_to(outside)
    model = name("escape")
    with pytest.raises(errors.ArtifactError):
        registry.register(
            support.deployment(model, "1.0.0"), ref.format(outside=outside, ws=ws), None
        )
    assert nothing_registered(registry, model)


@pytest.mark.parametrize("ref", ["../val.npz", "models/val.npz#x", "file:///etc/passwd"])
def test_escaping_validation_paths_are_refused(
    registry: MlflowRegistry, ws: Path, name: Name, ref: str
) -> None:
    (ws.parent / "val.npz").write_bytes((ws / VAL).read_bytes())
    model = name("escval")
    with pytest.raises(errors.ArtifactError):
        registry.register(support.deployment(model, "1.0.0"), MODEL, Path(ref))
    assert nothing_registered(registry, model)


def test_register_from_a_models_uri(registry: MlflowRegistry, ws: Path, name: Name) -> None:
    source, copy = name("src"), name("copy")
    original = registry.register(support.deployment(source, "1.0.0"), MODEL, None)
    registry.set_alias(source, "stable", "1.0.0")
    for i, ref in enumerate(
        [f"models:/{source}/1.0.0", f"models:/{source}@stable", f"models:/{source}/1"]
    ):
        made = registry.register(support.deployment(copy, f"1.0.{i}"), ref, None)
        assert made.sha256 == original.sha256
    with pytest.raises(errors.ArtifactError, match="no registered version"):
        registry.register(support.deployment(copy, "2.0.0"), f"models:/{source}@canary", None)


def test_unreadable_validation_data_leaves_nothing(
    registry: MlflowRegistry, ws: Path, name: Name
) -> None:
    (ws / "models" / "broken.npz").write_bytes(b"PK\x03\x04 truncated zip")
    model = name("broken")
    with pytest.raises(errors.ArtifactError, match="unreadable"):
        registry.register(support.deployment(model, "1.0.0"), MODEL, Path("models/broken.npz"))
    assert nothing_registered(registry, model)


def _fail_at(registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """Fault injection on the real store: the call named `step` fails after the version
    was created, as a crash or a dropped connection would."""
    real = registry.session.call

    def call(what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if what == step:
            raise errors.RegistryError(f"injected failure at {step}")
        return real(what, method, *args, **kwargs)

    monkeypatch.setattr(registry.session, "call", call)


@pytest.mark.parametrize("step", ["set semver alias", "mark ready"])
def test_failure_mid_registration_is_rolled_back(
    registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch, name: Name, step: str
) -> None:
    model = name("atomic")
    registry.register(support.deployment(model, "1.0.0"), MODEL, None)
    _fail_at(registry, monkeypatch, step)
    with pytest.raises(errors.RegistryError, match="injected"):
        registry.register(support.deployment(model, "1.1.0"), OTHER, VAL)
    assert registry.get_version(model, "1.1.0") is None
    assert list(registry.refresh([model])[model].versions) == ["1.0.0"]
    assert len(raw_versions(registry, model)) == 1  # the half-made version was deleted


def test_leftover_pending_version_is_invisible_then_replaced(
    registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch, name: Name
) -> None:
    """A crash that also prevents clean-up: the pending version stays in MLflow, mlops never
    shows it, and the next registration of that semver removes it."""
    model = name("crash")
    registry.register(support.deployment(model, "1.0.0"), MODEL, None)
    with monkeypatch.context() as patch:
        _fail_at(registry, patch, "mark ready")
        patch.setattr(registry, "_discard", lambda *args: None)
        with pytest.raises(errors.RegistryError):
            registry.register(support.deployment(model, "1.1.0"), OTHER, None)
    assert len(raw_versions(registry, model)) == 2
    assert registry.get_version(model, "1.1.0") is None
    assert list(registry.refresh()[model].versions) == ["1.0.0"]
    with pytest.raises(errors.RegistryError, match="not registered"):
        registry.artifact_path(model, "1.1.0")
    again = registry.register(support.deployment(model, "1.1.0"), OTHER, None)
    assert registry.get_version(model, "1.1.0") == again
    assert len(raw_versions(registry, model)) == 2


def test_aliases_rejection_and_conformance(registry: MlflowRegistry, name: Name) -> None:
    model = name("rollout")
    for semver in ("1.0.0", "1.1.0"):
        registry.register(support.deployment(model, semver), MODEL, None)
    registry.set_alias(model, "stable", "1.0.0")
    registry.set_alias(model, "canary", "1.1.0")
    assert registry.refresh([model])[model].aliases == {"canary": "1.1.0", "stable": "1.0.0"}
    registry.record_conformance(model, "1.0.0", {"passed": True, "accuracy": 0.95})
    registry.mark_rejected(model, "1.1.0", "error_rate 0.02 > 0.001 at 5%")
    registry.delete_alias(model, "canary")
    registry.delete_alias(model, "canary")  # idempotent
    found = registry.refresh([model])[model]
    assert found.aliases == {"stable": "1.0.0"} and found.stable == "1.0.0"
    assert found.versions["1.0.0"].status is state.VersionStatus.CONFORMANT
    assert found.versions["1.0.0"].conformance == {"passed": True, "accuracy": 0.95}
    rejected = found.versions["1.1.0"]
    assert rejected.status is state.VersionStatus.REJECTED
    assert rejected.rejected_reason == "error_rate 0.02 > 0.001 at 5%"
    with pytest.raises(errors.RegistryError, match="not registered"):
        registry.set_alias(model, "stable", "9.9.9")
    for bad in ("v1", "latest", "semver-1_0_0", "a b", ""):
        with pytest.raises(errors.UsageError):
            registry.set_alias(model, bad, "1.0.0")


class _CountingClient:
    """Counts the calls made on the real MLflow client (and forwards them)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()

    def __getattr__(self, method: str) -> Any:
        self.calls[method] += 1
        return getattr(self.client, method)


def test_refresh_is_one_batched_read(
    registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch, name: Name
) -> None:
    """Through MLflow's client (the fallback of the fast readers, test_fast_reader.py)."""
    from mlops.providers.mlflow import reader as mlflow_reader

    monkeypatch.setenv(mlflow_reader.READER_ENV, "mlflow")
    models = [name(f"batch{i}") for i in range(4)]
    for model in models:
        for semver in ("1.0.0", "1.1.0"):
            registry.register(support.deployment(model, semver), MODEL, None)
        registry.set_alias(model, "stable", "1.0.0")
    counting = _CountingClient(registry.session.client)
    registry.session._client = counting
    everything = registry.refresh()
    assert set(models) <= set(everything)
    for model in models:
        assert list(everything[model].versions) == ["1.0.0", "1.1.0"]
        assert everything[model].aliases == {"stable": "1.0.0"}
    assert counting.calls == Counter({"search_model_versions": 1, "search_registered_models": 1})
    counting.calls.clear()
    subset = registry.refresh(models[:2])
    assert list(subset) == sorted(models[:2])
    assert counting.calls == Counter({"search_model_versions": 1, "search_registered_models": 1})


def test_refresh_pages_through_many_versions(
    registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch, name: Name
) -> None:
    from mlops.providers.mlflow import session as mlflow_session

    model = name("paged")
    for patch in range(5):
        registry.register(support.deployment(model, f"1.0.{patch}"), MODEL, None)
    monkeypatch.setattr(mlflow_session, "VERSIONS_PAGE", 2)
    assert len(registry.refresh([model])[model].versions) == 5


def test_unknown_names_and_bad_input(registry: MlflowRegistry) -> None:
    assert registry.refresh(["never-registered"]) == {}
    assert registry.get_version("never-registered", "1.0.0") is None
    with pytest.raises(errors.UsageError):
        registry.refresh(["x' OR name != '"])
    with pytest.raises(errors.UsageError):
        registry.get_version("ok", "1.0")


def test_concurrent_registration_of_one_semver_backs_out(
    registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch, ws: Path, name: Name
) -> None:
    """Another writer creates the same semver between our check and our write (a real
    version in the real store): we remove ours and report a retryable error."""
    from mlops.providers.mlflow import tags as mlflow_tags

    model = name("race")
    registry.register(support.deployment(model, "1.0.0"), MODEL, None)
    first = registry.get_version(model, "1.0.0")
    assert first is not None
    real = registry.session.call

    def call(what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if what == "create version":
            rival_tags = {**kwargs["tags"], mlflow_tags.STATE: "pending:elsewhere:1"}
            real(what, method, *args, **{**kwargs, "tags": rival_tags})
        return real(what, method, *args, **kwargs)

    monkeypatch.setattr(registry.session, "call", call)
    with pytest.raises(errors.TransientError, match="concurrently"):
        registry.register(support.deployment(model, "1.1.0"), OTHER, None)
    survivors = [
        v for v in raw_versions(registry, model) if str(v.version) != first.registry_version
    ]
    assert [mlflow_tags.tags_of(v)[mlflow_tags.STATE] for v in survivors] == ["pending:elsewhere:1"]
    monkeypatch.undo()
    with pytest.raises(errors.TransientError, match="being registered"):
        registry.register(support.deployment(model, "1.1.0"), OTHER, None)
