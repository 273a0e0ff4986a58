"""One handler per action kind. Each reads `after` only and checks live state first, so
running it twice has the effect of running it once."""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from mlops import core, errors
from mlops.apply import checkpoints, journal, rebuild
from mlops.apply import hooks as hooks_
from mlops.apply import target as target_
from mlops.plan import types as t
from mlops.state import models as state

K = t.ActionKind
MODELS_URI = "models:/"


class Rejected(errors.MlopsError):
    """A check before traffic failed: the version must be rolled back without traffic."""

    exit_code = 3

    def __init__(self, semver: str, stable: str | None, reason: str) -> None:
        super().__init__(reason)
        self.semver, self.stable, self.reason = semver, stable, reason


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


class Handlers:
    def __init__(
        self,
        target: target_.Target,
        plan: t.Plan,
        run: journal.Journal,
        hooks: hooks_.Hook,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.target = target
        self.plan = plan
        self.run = run
        self.hooks = hooks
        self.sleep = sleep or time.sleep
        self.ws = target.ws

    def dispatch(self, action: t.Action) -> None:
        handler: Callable[[str, Mapping[str, Any]], None] = {
            K.REGISTER: self.register,
            K.VERIFY: self.verify,
            K.CONFORMANCE_TEST: self.conformance_test,
            K.BUILD_IMAGE: self.build_image,
            K.LOAD: self.load,
            K.SET_TRAFFIC: self.set_traffic,
            K.PROMOTE: self.promote,
            K.RETIRE: lambda model, after: self.retire(action.id, model, after),
            K.UPDATE_CONFIG: self.load,
            K.DELETE: self.delete,
        }[action.kind]
        handler(core.Address(action.address).model, action.after or {})

    # -- registry -----------------------------------------------------------------------------

    def register(self, model: str, after: Mapping[str, Any]) -> None:
        semver = str(after["semver"])
        existing = self.target.registry.get_version(model, semver)
        pinned = after.get("sha256")
        if existing is not None:
            if pinned and existing.sha256 != pinned:
                raise errors.RegistryError(
                    f"{model}@{semver} is registered with sha256 {existing.sha256}, "
                    f"the plan pins {pinned}"
                )
            return  # already registered by an earlier (interrupted) run: no duplicate
        artifact_text = str(after["artifact"])
        artifact: Path | str = artifact_text
        if not artifact_text.startswith(MODELS_URI):
            artifact = self.ws.inside(Path(artifact_text), what="artifact")
        validation = after.get("validation")
        validation_path = (
            self.ws.inside(Path(validation), what="validation data") if validation else None
        )
        deployment = rebuild.deployment_for(self.plan, model, semver, after)
        self.target.registry.register(deployment, artifact, validation_path)

    def verify(self, model: str, after: Mapping[str, Any]) -> None:
        semver = str(after["semver"])
        version = self.target.registry.get_version(model, semver)
        if version is None:
            raise errors.RegistryError(f"{model}@{semver} is not registered")
        expected = after.get("sha256") or version.sha256
        try:
            path = self.target.registry.artifact_path(model, semver)
        except errors.ArtifactError as exc:
            raise Rejected(semver, self._stable(model), f"verify failed: {exc.message}") from None
        actual = _sha256(path)
        if actual != expected:
            raise Rejected(
                semver,
                self._stable(model),
                f"verify failed: stored artifact sha256 {actual} is not {expected}",
            )

    def conformance_test(self, model: str, after: Mapping[str, Any]) -> None:
        semver = str(after["semver"])
        version = self.target.registry.get_version(model, semver)
        if version is None:
            raise errors.RegistryError(f"{model}@{semver} is not registered")
        if version.status is state.VersionStatus.CONFORMANT:
            return
        # The test runs against the engine, so the version is loaded first, with no traffic.
        load = self._load_payload(model, semver)
        if load is not None:
            self.load(model, load)
        from mlops import conformance

        result = conformance.run(
            self.target, model, semver, after, validation=self._validation(model, semver)
        )
        self.target.registry.record_conformance(model, semver, result)
        if not result.get("passed"):
            raise Rejected(
                semver, self._stable(model), f"conformance failed: {result.get('reason', result)}"
            )

    def build_image(self, model: str, after: Mapping[str, Any]) -> None:
        if self.ws.config.target == "local":
            return  # the local engine serves the registry's artifact directly
        raise errors.PermanentError("building images is only supported by the kubernetes target")

    # -- runtime ------------------------------------------------------------------------------

    def load(self, model: str, after: Mapping[str, Any]) -> None:
        """`load` and `update_config`: the engine's load is idempotent and applies settings."""
        semver = str(after["semver"])
        runtime = self.target.runtime
        runtime.ensure_running(int(after.get("replicas") or 1))
        artifact = self.target.registry.artifact_path(model, semver)
        runtime.load(model, semver, artifact, dict(after.get("settings") or {}))
        self.target.record_applied(model)

    def set_traffic(self, model: str, after: Mapping[str, Any]) -> None:
        weights = {str(v): int(w) for v, w in dict(after["weights"]).items()}
        raw = after.get("shadow")
        shadow = state.ShadowRoute.model_validate(raw) if raw else None
        # The runtime compares replica by replica and changes nothing when every one of them
        # already holds this table (a merged view would hide a replica that missed it).
        generation = self.target.runtime.set_traffic(model, weights, shadow)
        self.hooks.on_weight(model, weights, generation)
        self.target.record_applied(model)

    def retire(self, action_id: str, model: str, after: Mapping[str, Any]) -> None:
        semver = str(after["semver"])
        wait = float(after.get("after_seconds") or 0.0)
        # Measured from the first intent, so a resumed run does not start the wait over.
        first = next(
            (
                e
                for e in self.run.entries
                if e.event is journal.Event.INTENT and e.action == action_id
            ),
            None,
        )
        started = datetime.fromisoformat(first.at).timestamp() if first else time.time()
        left = started + wait - time.time()
        if left > 0:
            self.hooks.on_message(
                f"{model}: keeping {semver} loaded for {core.format_duration(left)} "
                "for instant rollback"
            )
        while (left := started + wait - time.time()) > 0:
            self.sleep(min(left, checkpoints.TICK_SECONDS))
            self.hooks.on_hold_tick(model, wait - left, left)
        runtime = self.target.runtime
        if not runtime.reachable():
            return
        live = runtime.refresh([model]).get(model)
        if live is None or semver not in live.loaded:
            return
        shadow = live.shadow.version if live.shadow else None
        if live.weights.get(semver, 0) > 0 or shadow == semver:
            raise errors.PermanentError(
                f"{model}@{semver} still receives traffic ({live.weights}); not unloading it"
            )
        runtime.unload(model, semver)
        self.target.record_applied(model)

    def delete(self, model: str, after: Mapping[str, Any]) -> None:
        runtime = self.target.runtime
        if runtime.reachable():
            live = runtime.refresh([model]).get(model)
            if live is not None:
                if live.weights or live.shadow:
                    # Taken out for good: recorded before the workers change (see Runtime).
                    generation = runtime.set_traffic(model, {}, None, rollback=True)
                    self.hooks.on_weight(model, {}, generation)
                for semver in sorted(live.loaded):
                    runtime.unload(model, semver)
        from mlops.state import applied

        applied.update(applied.path_in(self.ws.ensure_state_dir()), model, None)

    def promote(self, model: str, after: Mapping[str, Any]) -> None:
        set_aliases(self.target, model, after)

    # -- checks -------------------------------------------------------------------------------

    def check_live_weight(self, point: checkpoints.Checkpoint) -> None:
        """Before a hold (and so on every resume): the live weight must be the planned one.
        Anything else was changed by hand; holding would judge the wrong split."""
        runtime = self.target.runtime
        live = runtime.refresh([point.model]).get(point.model) if runtime.reachable() else None
        actual = live.weights.get(point.canary, 0) if live is not None else 0
        expected = 0 if point.shadow else point.weight
        if actual != expected:
            raise errors.PermanentError(
                f"{point.model}: {point.canary} has weight {actual}% live, the plan holds at "
                f"{expected}%: traffic was changed outside this apply; plan again"
            )

    def _stable(self, model: str) -> str | None:
        found = self.target.registry.refresh([model]).get(model)
        return found.stable if found else None

    def _validation(self, model: str, semver: str) -> Path | None:
        """The validation set named where the plan registers the version (the conformance
        payload carries thresholds only)."""
        for action in self.plan.actions:
            after = action.after or {}
            if (
                action.kind is K.REGISTER
                and core.Address(action.address).model == model
                and after.get("semver") == semver
                and after.get("validation")
            ):
                return self.ws.inside(Path(str(after["validation"])), what="validation data")
        return None

    def _load_payload(self, model: str, semver: str) -> dict[str, Any] | None:
        runtime = self.target.runtime
        if runtime.reachable():
            live = runtime.refresh([model]).get(model)
            if live is not None and live.loaded.get(semver) == "ready":
                return None
        for action in self.plan.actions:
            after = action.after or {}
            if (
                action.kind in (K.LOAD, K.UPDATE_CONFIG)
                and core.Address(action.address).model == model
                and after.get("semver") == semver
            ):
                return dict(after)
        raise errors.PlanError(f"{model}@{semver}: the plan tests it but never loads it")


def set_aliases(target: target_.Target, model: str, after: Mapping[str, Any]) -> None:
    """A promote payload: set `aliases`, drop those in `clear`; what is in place is kept."""
    registry = target.registry
    current = (registry.refresh([model]).get(model) or state.RegistryModel(name=model)).aliases
    for alias, semver in dict(after.get("aliases") or {}).items():
        if current.get(alias) != semver:
            registry.set_alias(model, alias, str(semver))
    for alias in after.get("clear") or []:
        if alias in current:
            registry.delete_alias(model, str(alias))
    target.record_applied(model)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
