"""One handler per action kind. Each reads its action's typed `after` only (never another
action) and checks live state first, so running it twice has the effect of running it once."""

from __future__ import annotations

import getpass
import hashlib
import os
import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from mlops import core, errors
from mlops.apply import checkpoints, images, journal, rebuild
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
        model = action.model
        match action.after:
            case t.RegisterPayload() as after:
                self.register(model, after)
            case t.VerifyPayload() as after:
                self.verify(model, after)
            case t.ConformancePayload() as after:
                self.conformance_test(model, after)
            case t.LoadPayload() | t.UpdateConfigPayload() as after:
                self.load(model, after)
            case t.TrafficPayload() as after:
                self.set_traffic(model, after)
            case t.PromotePayload() as after:
                self.promote(model, after)
            case t.RetirePayload() as after:
                self.retire(action.id, model, after)
            case t.DeletePayload() as after:
                self.delete(model, after)
            case t.ScaleEnginePayload() as after:
                self.scale_engine(after)
            case t.BuildImagePayload() as after:
                images.build_image(self.target, model, after, self.hooks)
            case t.PushImagePayload() as after:
                images.push_image(self.target, model, after, self.hooks)
            case t.CheckpointPayload():
                raise errors.PlanError(f"{action.id}: a checkpoint is held, not dispatched")

    # -- registry -----------------------------------------------------------------------------

    def register(self, model: str, after: t.RegisterPayload) -> None:
        semver = after.semver
        existing = self.target.registry.get_version(model, semver)
        pinned = after.sha256
        if existing is not None:
            if pinned and existing.sha256 != pinned:
                raise errors.RegistryError(
                    f"{model}@{semver} is registered with sha256 {existing.sha256}, "
                    f"the plan pins {pinned}"
                )
            return  # already registered by an earlier (interrupted) run: no duplicate
        artifact: Path | str = after.artifact
        if not after.artifact.startswith(MODELS_URI):
            artifact = self.ws.inside(Path(after.artifact), what="artifact")
        validation = after.validation
        validation_path = (
            self.ws.inside(Path(validation.data), what="validation data") if validation else None
        )
        deployment = rebuild.deployment_for(model, after)
        self.target.registry.register(deployment, artifact, validation_path)

    def verify(self, model: str, after: t.VerifyPayload) -> None:
        semver = after.semver
        version = self.target.registry.get_version(model, semver)
        if version is None:
            raise errors.RegistryError(f"{model}@{semver} is not registered")
        expected = after.sha256 or version.sha256
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

    def conformance_test(self, model: str, after: t.ConformancePayload) -> None:
        semver = after.semver
        version = self.target.registry.get_version(model, semver)
        if version is None:
            raise errors.RegistryError(f"{model}@{semver} is not registered")
        if version.status is state.VersionStatus.CONFORMANT:
            return
        # The test runs against the engine, so the version is loaded first, with no traffic,
        # as the payload says (the same settings as the load that follows it in the plan).
        if not self._ready(model, semver):
            self._load(model, semver, after.settings, after.replicas)
        from mlops import conformance

        validation = (
            self.ws.inside(Path(after.validation), what="validation data")
            if after.validation
            else None
        )
        result = conformance.run(
            self.target, model, semver, after.model_dump(mode="json"), validation=validation
        )
        self.target.registry.record_conformance(model, semver, result)
        if not result.get("passed"):
            raise Rejected(
                semver, self._stable(model), f"conformance failed: {result.get('reason', result)}"
            )

    # -- runtime ------------------------------------------------------------------------------

    def load(self, model: str, after: t.LoadPayload | t.UpdateConfigPayload) -> None:
        """`load` and `update_config`: the engine's load is idempotent and applies settings."""
        self._load(model, after.semver, after.settings, after.replicas)

    def _load(self, model: str, semver: str, settings: t.EngineSettings, replicas: int) -> None:
        runtime = self.target.runtime
        runtime.ensure_running(replicas)
        artifact = self.target.registry.artifact_path(model, semver)
        runtime.load(model, semver, artifact, settings.engine_json())
        self.target.record_applied(model)

    def set_traffic(self, model: str, after: t.TrafficPayload) -> None:
        weights = dict(after.weights)
        # The runtime compares replica by replica and changes nothing when every one of them
        # already holds this table (a merged view would hide a replica that missed it).
        generation = self.target.runtime.set_traffic(model, weights, after.shadow)
        self.hooks.on_weight(model, weights, generation)
        self.target.record_applied(model)

    def retire(self, action_id: str, model: str, after: t.RetirePayload) -> None:
        semver = after.semver
        wait = after.after_seconds
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
        # The wall clock only says how much of the wait an earlier run already spent (never
        # less than none, never more than all of it: a clock stepped back must not stretch
        # the wait to hours); the rest is timed on the monotonic clock.
        spent = min(max(time.time() - started, 0.0), wait)
        deadline = time.monotonic() + wait - spent
        left = deadline - time.monotonic()
        if left > 0:
            self.hooks.on_message(
                f"{model}: keeping {semver} loaded for {core.format_duration(left)} "
                "for instant rollback"
            )
        while (left := deadline - time.monotonic()) > 0:
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

    def delete(self, model: str, after: t.DeletePayload) -> None:
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

    def scale_engine(self, after: t.ScaleEnginePayload) -> None:
        """The shared engine's worker count, changed live (no request lost); idempotent."""
        self.target.runtime.scale(after.replicas)

    def promote(self, model: str, after: t.PromotePayload) -> None:
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

    def _ready(self, model: str, semver: str) -> bool:
        runtime = self.target.runtime
        if not runtime.reachable():
            return False
        live = runtime.refresh([model]).get(model)
        return live is not None and live.loaded.get(semver) == "ready"


def set_aliases(target: target_.Target, model: str, after: t.PromotePayload) -> None:
    """A promote payload: set `aliases`, drop those in `clear`; what is in place is kept."""
    registry = target.registry
    current = (registry.refresh([model]).get(model) or state.RegistryModel(name=model)).aliases
    for alias, semver in after.aliases.items():
        if current.get(alias) != semver:
            registry.set_alias(model, alias, semver)
    for alias in after.clear:
        if alias in current:
            registry.delete_alias(model, alias)
    target.record_applied(model)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
