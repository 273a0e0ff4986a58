"""The one place that wires layers together: plan(), apply(), status(), drift(), ...

The CLI parses arguments and renders; everything it does goes through a function here, and
every function returns a typed result (the types are named here for the commands, which
import nothing else of the controller: .importlinter). Heavy providers are imported inside
functions, so importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops.drift import hook as _drift_hook

if TYPE_CHECKING:
    from mlops.state.models import RegistryModel as RegistryModel
    from mlops.workspace import Workspace


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
    from mlops.providers import factory
    from mlops.providers.mlflow import tags as mlflow_tags

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
if TYPE_CHECKING:
    from mlops.drift import report as drift_report
    from mlops.policy import evaluate as policy_evaluate
    from mlops.policy import load as policy_load
    from mlops.render.base import Review as Review
    from mlops.render.base import ReviewPolicy as ReviewPolicy

    DriftRun = drift_report.DriftRun
    PolicyOutcome = policy_evaluate.Outcome

# Seconds before the on_drift command is killed (the default `mlops drift --hook-timeout`
# shows). A light module: subprocess and signal handling only.
DRIFT_HOOK_TIMEOUT = _drift_hook.DEFAULT_TIMEOUT


def _user_path(ws: Workspace, path: str | Path, what: str) -> Path:
    """A path the user typed: relative to the current directory when that is inside the
    workspace (as typed in a shell), else to the workspace root (as with `-C DIR`)."""
    raw = Path(path)
    cwd = Path.cwd().resolve()
    base = cwd if cwd == ws.root or ws.root in cwd.parents else ws.root
    return ws.inside(raw if raw.is_absolute() else base / raw, what=what)


def policy_check(
    plan_file: str | Path, *, policy: str | Path | None = None, workspace: str | Path | None = None
) -> policy_evaluate.Outcome:
    """SRE policy rules over a saved plan. Default rules: the workspace's `policies/`, else
    the built-in defaults (the same rules as the repository's policies/default.yaml)."""
    from mlops import workspace as ws_module
    from mlops.plan import planfile
    from mlops.policy import evaluate

    ws = ws_module.open_workspace(workspace)
    plan_path = _user_path(ws, plan_file, "plan file")
    plan = planfile.load(plan_path)
    rule_set = _policy_set(ws, policy)
    result = evaluate.evaluate(plan, rule_set.rules, _policy_context(rule_set, plan, plan_path))
    return evaluate.Outcome(plan=str(plan_file), sources=rule_set.sources, result=result)


def _policy_set(ws: Workspace, policy: str | Path | None) -> policy_load.PolicySet:
    """`policy` (a directory or file), else the workspace's policies/, else the built-in."""
    from mlops.policy import load

    if policy is not None:
        return load.load_policies(_user_path(ws, policy, "policy path"))
    if (ws.root / load.DEFAULT_DIR).is_dir():
        return load.load_policies(ws.root / load.DEFAULT_DIR)
    return load.load_builtin()


def _policy_context(
    rule_set: policy_load.PolicySet, plan: Plan, plan_path: Path | None
) -> policy_evaluate.Context:
    """The approvals recorded beside the plan file (none for a plan made in this run), the
    policy's groups and waivers, and today (UTC) for the waivers' expiry."""
    from datetime import UTC, datetime

    from mlops.policy import approvals, evaluate

    recorded = approvals.read(plan_path) if plan_path is not None else []
    return evaluate.Context(
        standing=approvals.standing(plan, recorded),
        groups=rule_set.groups,
        waivers=rule_set.waivers,
        today=datetime.now(UTC).date(),
    )


def approve(
    plan_file: str | Path, by: str, comment: str = "", *, workspace: str | Path | None = None
) -> ApprovalRecord:
    """Record `by`'s approval of the saved plan's content (its digest) beside the file."""
    from mlops import workspace as ws_module
    from mlops.plan import planfile
    from mlops.policy import approvals

    approvals.check_name(by)
    approvals.check_comment(comment)
    ws = ws_module.open_workspace(workspace)
    plan_path = _user_path(ws, plan_file, "plan file")
    plan = planfile.load(plan_path)
    approval = approvals.record(plan_path, plan, by, comment)
    standing = approvals.standing(plan, approvals.read(plan_path))
    return ApprovalRecord(
        digest=approval.plan_digest,
        path=approvals.path_for(plan_path),
        approvers=tuple(standing.approvers),
    )


@dataclass(frozen=True)
class ApprovalRecord:
    """What `approve` recorded: the plan's digest, the approvals file, every approver of
    this digest so far."""

    digest: str
    path: Path
    approvers: tuple[str, ...]


def review(
    plan_path: Path, plan: Plan, ws: Workspace, policy: str | Path | None, with_policy: bool
) -> Review:
    """The approvals (and with `with_policy`, the policy result) shown with a saved plan."""
    from mlops.policy import approvals
    from mlops.render import base

    recorded = approvals.read(plan_path)
    standing = approvals.standing(plan, recorded)
    if not with_policy:
        return base.Review(
            digest=standing.digest,
            approvals=[(a.by, a.at, a.comment) for a in standing.current],
            stale_approvals=len(standing.stale),
        )
    from mlops.policy import evaluate

    rule_set = _policy_set(ws, policy)
    result = evaluate.evaluate(plan, rule_set.rules, _policy_context(rule_set, plan, plan_path))
    return base.Review(
        digest=standing.digest,
        approvals=[(a.by, a.at, a.comment) for a in standing.current],
        stale_approvals=len(standing.stale),
        policy=_policy_lines(rule_set, result),
    )


def _policy_lines(rule_set: policy_load.PolicySet, result: policy_evaluate.Result) -> ReviewPolicy:
    from mlops.render import base

    return base.ReviewPolicy(
        sources=tuple(_shown_path(source) for source in rule_set.sources),
        rules=result.rules_checked,
        passed=result.passed(),
        violations=[
            (str(v.severity), v.rule, v.model, v.detail, v.message) for v in result.violations
        ],
        approvals=[(a.rule, a.describe(), a.met) for a in result.approvals],
        waived=[
            (w.violation.rule, w.violation.model, w.by, w.reason, w.expires) for w in result.waived
        ],
        notes=list(result.notes),
    )


def _shown_path(source: str) -> str:
    """A policy file as a reviewer reads it: relative to the current directory if inside."""
    import os

    relative = os.path.relpath(source) if os.path.isabs(source) else source
    return source if relative.startswith("..") else relative


def check_approvals(ws: Workspace, plan: Plan, plan_path: Path | None) -> list[dict[str, object]]:
    """Refuse a plan whose policy requires approvals it lacks (the workspace's policies/, else
    the built-in set); the approvals that count, for the journal."""
    from mlops.policy import approvals, evaluate

    rule_set = _policy_set(ws, None)
    if not any(r.check == "require_approvals" for r in rule_set.rules):
        return []
    context = _policy_context(rule_set, plan, plan_path)
    result = evaluate.evaluate(plan, rule_set.rules, context)
    unmet = [a for a in result.approvals if not a.met and a.severity == "error"]
    if unmet:
        first = unmet[0]
        if plan_path is None:
            raise approvals.ApprovalError(
                f"policy rule {first.rule} requires {first.required} approval(s): save the plan "
                "(mlops plan -o FILE), approve it (mlops approve FILE --by NAME), apply the file"
            )
        changed = " (the plan changed after it was approved)" if first.stale else ""
        raise approvals.ApprovalError(
            f"plan {plan_path.name} lacks approvals{changed}: rule {first.rule}: "
            f"{first.describe()}; plan digest {context.standing.digest if context.standing else ''}"
        )
    standing = context.standing
    return [
        {"by": a.by, "at": a.at, "plan_digest": a.plan_digest, "comment": a.comment}
        for a in (standing.current if standing else ())
    ]


def drift(
    name: str,
    data: str | Path,
    *,
    version: str | None = None,
    report: str | Path | None = None,
    run_hook: bool = False,
    hook_timeout: float | None = None,
    workspace: str | Path | None = None,
    progress: drift_report.Progress | None = None,
) -> drift_report.DriftRun:
    """Feature drift of `data` against the training statistics of NAME@version (default: the
    version the `stable` alias points at)."""
    import pydantic

    from mlops import errors
    from mlops import workspace as ws_module
    from mlops.drift import hook
    from mlops.drift import run as drift_run
    from mlops.providers import factory
    from mlops.spec import load
    from mlops.spec import models as spec

    try:
        spec.Metadata(name=name)
    except pydantic.ValidationError:
        raise errors.UsageError(f"{name!r} is not a model name (DNS-1123 label)") from None
    ws = ws_module.open_workspace(workspace)
    data_path = _user_path(ws, data, "data file")
    if not data_path.is_file():  # before the (slow) registry: fail fast on a typo
        raise errors.UsageError(f"data file {str(data)!r} does not exist")
    report_path = _user_path(ws, report, "report") if report is not None else None
    if report_path is not None:
        drift_run.check_report_path(report_path)
    specs = ws.root / "specs"
    deployments = (
        [item.deployment for item in load.load_specs([specs], ws.root)] if specs.is_dir() else []
    )
    from mlops.drift import live as drift_live

    registry = factory.registry(ws)
    version, registered = drift_live.registered_version(registry, name, version)
    request = drift_run.Request(
        model=name,
        version=version,
        input_names=tuple(t.name for t in registered.signature.inputs),
        training=tuple(registry.training_stats(name, version)),
        data=data_path,
        data_label=str(data),
        workspace=ws.root,
        monitoring=drift_run.find_monitoring(deployments, name),
        report=report_path,
        report_label=str(report) if report is not None else None,
        run_hook=run_hook,
        hook_timeout=hook_timeout or hook.DEFAULT_TIMEOUT,
    )
    return drift_run.execute(request, progress=progress)


# --- plan and show ------------------------------------------------------------------------------
if TYPE_CHECKING:
    from collections.abc import Sequence

    from mlops.plan.diff import Desired
    from mlops.plan.types import Plan as Plan
    from mlops.providers.base import Images, Runtime
    from mlops.spec.load import LoadedSpec
    from mlops.state.models import LiveState


def plan(
    workspace: str | None = None,
    paths: Sequence[str | Path] = (),
    *,
    allow_delete: bool = False,
    accept_missing_accelerator: bool = False,
) -> Plan:
    """Load specs, refresh live state (one batched read per provider), diff. Changes nothing.
    `accept_missing_accelerator`: on the local target, a spec's accelerator this machine does
    not have is a warning (the engine runs it on the CPU) instead of a plan error."""
    from datetime import UTC, datetime

    from mlops import gcpause
    from mlops import workspace as ws_mod
    from mlops.apply import journal
    from mlops.plan import diff
    from mlops.providers import factory
    from mlops.spec import load
    from mlops.state import applied, refresh

    ws = ws_mod.open_workspace(workspace)
    loaded = load.load_specs(list(paths) or [ws.root / "specs"], ws.root)
    desired = [_desired(item, ws.root) for item in loaded]
    last = applied.read(applied.path_in(ws.state_dir))
    names = sorted({item.name for item in loaded} | set(last))
    images, versions = _image_queries(ws, desired)
    live = refresh.refresh(
        factory.registry(ws), _runtime(ws), names, last, images=images, image_versions=versions
    )
    desired = [_with_artifact_digest(item, live, ws.root) for item in desired]
    desired = _with_served(desired, ws)
    with gcpause.paused():  # the diff allocates many small, long-lived objects (see gcpause)
        made = diff.diff(
            desired,
            live,
            workspace=str(ws.root),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            spec_digest=load.spec_digest(loaded),
            allow_delete=allow_delete,
            costs=ws.config.costs,
            environment=ws.config.environment,
        )
    missing = _missing_accelerators(ws, loaded)
    # Explicit workspace choices (e.g. serve.host off loopback) are reported with the plan.
    warnings = [*ws.warnings, *made.warnings]
    if accept_missing_accelerator:
        warnings += [f"{m} (accepted: --accept-missing-accelerator)" for m in missing]
    # A rollback that began and did not finish comes first: no plan may undo it.
    problems = [*made.errors, *journal.unfinished_rollbacks(ws.state_dir)]
    problems += _cluster_problems(ws, loaded, live)
    if not accept_missing_accelerator:
        problems += [f"{m}; plan with --accept-missing-accelerator to accept" for m in missing]
    return made.model_copy(update={"refreshed": names, "warnings": warnings, "errors": problems})


def _with_served(desired: list[Desired], ws: Workspace) -> list[Desired]:
    """Each spec with the serving config apply last applied for it (hardware, autoscaling)."""
    import dataclasses

    from mlops.apply import served

    records = served.read(ws.state_dir)
    return [dataclasses.replace(item, served=records.get(item.deployment.name)) for item in desired]


def _missing_accelerators(ws: Workspace, loaded: Sequence[LoadedSpec]) -> list[str]:
    """On the local target: each spec asking for an accelerator this machine lacks. Asked
    only when a spec names one (nvidia-smi and onnxruntime's providers)."""
    from mlops.providers.engine import accelerators

    if ws.config.target != "local":
        return []
    asking = [
        (item.name, item.deployment.spec.serving.hardware)
        for item in loaded
        if item.deployment.spec.serving.hardware.accelerator != "none"
    ]
    if not asking:
        return []
    found = accelerators.detect()
    return [
        f"{name}: serving.hardware asks for {hardware.accelerator} but this machine has none "
        f"usable ({found.how}): the local engine would run it on the CPU"
        for name, hardware in asking
        if not found.has(hardware.accelerator)
    ]


def _cluster_problems(ws: Workspace, loaded: Sequence[LoadedSpec], live: LiveState) -> list[str]:
    """The kubernetes target runs images by digest: a version without one cannot be planned."""
    if ws.config.target != "kubernetes":
        return []
    from mlops.providers.kubernetes import runtime as kubernetes

    deployments = [item.deployment for item in loaded]
    return kubernetes.plan_problems(ws, deployments, live.registry)


def save_plan(plan: Plan, out: str | Path, workspace: str | None = None) -> Path:
    """Write the plan file atomically; the path must stay inside the workspace."""
    from mlops import errors
    from mlops import workspace as ws_mod
    from mlops.plan import planfile

    if plan.errors:
        raise errors.PlanError("a plan with errors cannot be saved")
    ws = ws_mod.open_workspace(workspace)
    raw = Path(out)
    cwd = Path.cwd().resolve()
    # As typed in a shell when run inside the workspace; relative to it with `-C DIR`.
    base = cwd if cwd == ws.root or ws.root in cwd.parents else ws.root
    target = ws.inside(raw if raw.is_absolute() else base / raw, what="plan file")
    if target.is_dir():
        raise errors.UsageError(f"plan file {str(out)!r} is a directory")
    planfile.save(plan, target)
    return target


def show(planfile_path: str | Path, workspace: str | Path | None = None) -> Plan:
    """Read a saved plan (format version checked). With a workspace (`-C DIR`), the path is
    resolved as `apply` and `policy check` resolve it: from the current directory when that
    is inside the workspace, else from the workspace root, and it must stay inside."""
    from mlops.plan import planfile

    if workspace is None:
        return planfile.load(Path(planfile_path))
    from mlops import workspace as ws_module

    ws = ws_module.open_workspace(workspace)
    return planfile.load(_user_path(ws, planfile_path, "plan file"))


@dataclass(frozen=True)
class Shown:
    plan: Plan
    review: Review


def show_saved(
    planfile_path: str | Path,
    *,
    workspace: str | Path | None = None,
    with_policy: bool = False,
    policy: str | Path | None = None,
) -> Shown:
    """A saved plan with its approvals (and with `with_policy`, the policy result), the path
    resolved as `show` resolves it."""
    from mlops import workspace as ws_module
    from mlops.plan import planfile

    ws = ws_module.open_workspace(workspace)
    path = (
        _user_path(ws, planfile_path, "plan file") if workspace is not None else Path(planfile_path)
    )
    saved = planfile.load(path)
    return Shown(plan=saved, review=review(path, saved, ws, policy, with_policy))


def _desired(item: LoadedSpec, root: Path) -> Desired:
    from mlops.plan import diff

    model = item.deployment.spec.model
    artifact = model.artifact
    if item.artifact_path is not None:
        artifact = item.artifact_path.relative_to(root.resolve()).as_posix()
    validation = None
    if item.validation_path is not None:
        validation = item.validation_path.relative_to(root.resolve()).as_posix()
    return diff.Desired(deployment=item.deployment, artifact=artifact, validation=validation)


def _with_artifact_digest(item: Desired, live: LiveState, root: Path) -> Desired:
    """The artifact file's sha256 when its semver is registered (the diff compares them)."""
    import dataclasses
    import hashlib

    model = item.deployment.spec.model
    registered = live.registry.get(item.deployment.name)
    if registered is None or model.version not in registered.versions:
        return item
    if item.artifact.startswith("models:/"):
        return item
    path = root / item.artifact
    try:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return item  # a missing file is reported where it is read (register, verify)
    return dataclasses.replace(item, artifact_sha256=digest)


def _image_queries(
    ws: Workspace, desired: Sequence[Desired]
) -> tuple[Images | None, dict[str, tuple[str, str | None]]]:
    """With `images:` in mlops.yaml: the OCI registry, and each spec's version with the sha256
    of its artifact file (used until the version is registered; docs/images.md)."""
    import hashlib

    from mlops.providers import images

    found = images.registry_images(ws.config.images)
    if found is None:
        return None, {}
    versions: dict[str, tuple[str, str | None]] = {}
    for item in desired:
        digest = None
        if not item.artifact.startswith("models:/"):
            try:
                with (ws.root / item.artifact).open("rb") as handle:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
            except OSError:
                digest = None  # reported where it is read (register, verify)
        versions[item.deployment.name] = (item.deployment.spec.model.version, digest)
    return found, versions


def _runtime(ws: Workspace) -> Runtime:
    """The workspace's serving runtime (the engine may be stopped: refresh then says so)."""
    from mlops.providers import factory

    return factory.runtime(ws)


# --- apply, status, promote, rollback, unlock ---------------------------------------------------
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import IO, Any

    from mlops import errors as errors_
    from mlops.apply import executor, hooks, lock
    from mlops.apply import rollback as rollback_
    from mlops.apply.target import Target

    # The results and listener the commands name (annotations only: nothing is imported).
    ApplyResult = executor.Result
    RollbackResult = rollback_.RollbackResult
    LockInfo = lock.LockInfo
    Listener = hooks.Hook


def _apply_target(ws: Workspace) -> Target:
    """Registry, runtime and (lazily) metrics for an apply session."""
    from mlops import errors
    from mlops.apply import target
    from mlops.providers import factory

    runtime = _runtime(ws)
    if runtime is None:
        raise errors.UsageError("no serving runtime is available for this workspace")
    return target.Target(
        ws=ws,
        registry=factory.registry(ws),
        runtime=runtime,
        metrics_factory=lambda: factory.metrics(ws, runtime),
    )


def apply(
    plan_file: str | Path | None = None,
    paths: Sequence[str | Path] = (),
    *,
    workspace: str | Path | None = None,
    confirm: Callable[[Plan], bool] | None = None,
    lock_timeout: float = 0.0,
    listeners: Sequence[Listener] = (),
) -> ApplyResult:
    """Execute a saved plan (or plan `paths` first and ask `confirm`). Returns the run result;
    the caller maps rolled back / paused outcomes to exit codes 3 / 4."""
    from mlops import errors
    from mlops import workspace as ws_mod
    from mlops.apply import session
    from mlops.plan import planfile

    ws = ws_mod.open_workspace(workspace)
    if plan_file is not None:
        source = str(plan_file)
        plan_path = ws.inside(Path(plan_file), what="plan file")
        saved = planfile.load(plan_path)
        # Sign-off is checked before anything else: a plan without it changes nothing.
        approved = check_approvals(ws, saved, plan_path) if saved.actions else []
    else:
        source = None
        saved = plan(str(ws.root), paths)
        approved = check_approvals(ws, saved, None) if saved.actions else []
        if confirm is not None and saved.actions and not confirm(saved):
            raise errors.MlopsError("apply cancelled: nothing was changed")
    target = _apply_target(ws)
    if approved:
        from mlops.apply import signoff

        listeners = [*listeners, signoff.Recorder(ws.state_dir, approved)]
    result = session.apply_plan(
        target,
        saved,
        source=source,
        live=lambda: _live_for_apply(ws, target, saved, paths if plan_file is None else ()),
        lock_timeout=lock_timeout,
        listeners=listeners,
    )
    from mlops.apply import executor, served

    # What was applied is what the next plan compares hardware and autoscaling with.
    done = {m: o is executor.Outcome.APPLIED for m, o in result.models.items()}
    # The run's outcome stands if the record cannot be written: the next plan then compares
    # with the older record and plans the (idempotent) in-place update again.
    import contextlib

    with contextlib.suppress(OSError):
        served.record(ws.ensure_state_dir(), saved, done)
    return result


def promote(
    name: str,
    *,
    workspace: str | Path | None = None,
    lock_timeout: float = 0.0,
    listeners: Sequence[Listener] = (),
) -> ApplyResult:
    """Resume `name`'s paused rollout, its paused checkpoint passed by this decision."""
    from mlops import workspace as ws_mod
    from mlops.apply import session

    ws = ws_mod.open_workspace(workspace)
    return session.promote(_apply_target(ws), name, lock_timeout=lock_timeout, listeners=listeners)


def rollback(
    name: str,
    *,
    workspace: str | Path | None = None,
    lock_timeout: float = 0.0,
    listeners: Sequence[Listener] = (),
) -> RollbackResult:
    """Roll `name`'s candidate back now: weight 0, unload, aliases, mark rejected."""
    from mlops import workspace as ws_mod
    from mlops.apply import session

    ws = ws_mod.open_workspace(workspace)
    return session.roll_back(
        _apply_target(ws), name, lock_timeout=lock_timeout, listeners=listeners
    )


def unlock(lock_id: str, *, workspace: str | Path | None = None) -> LockInfo:
    """Release the workspace lock `lock_id` (a run that died while holding it)."""
    from mlops import workspace as ws_mod
    from mlops.apply import lock

    return lock.unlock(ws_mod.open_workspace(workspace).state_dir, lock_id)


def status(name: str | None = None, *, workspace: str | Path | None = None) -> dict[str, Any]:
    """Versions, weights, replicas, gate history and any rollout in progress (JSON-ready)."""
    from mlops import workspace as ws_mod
    from mlops.apply import status as status_mod

    ws = ws_mod.open_workspace(workspace)
    return status_mod.collect(_apply_target(ws), name)


def progress_view(stream: IO[str]) -> Listener:
    """The live progress of apply, promote and rollback on `stream` (pass it in `listeners`)."""
    from mlops.apply import progress

    return progress.Progress(stream)


def outcome_error(result: ApplyResult) -> errors_.MlopsError | None:
    """What ends a run that did not apply everything: RolledBackError (exit 3) naming the
    models rolled back or aborted, PausedError (exit 4) naming the paused ones; else None."""
    from mlops import errors
    from mlops.apply.executor import Outcome

    def reasons(models: list[str]) -> str:
        return "; ".join(f"{m}: {result.reasons.get(m, '')}" for m in models)

    if result.outcome in (Outcome.ROLLED_BACK, Outcome.ABORTED):
        undone = (Outcome.ROLLED_BACK, Outcome.ABORTED)
        stopped = [m for m, o in result.models.items() if o in undone]
        return errors.RolledBackError("rolled back: " + reasons(stopped))
    if result.outcome is Outcome.PAUSED:
        paused = [m for m, o in result.models.items() if o is Outcome.PAUSED]
        return errors.PausedError(
            "paused: "
            + reasons(paused)
            + " (mlops promote NAME resumes, mlops rollback NAME undoes)"
        )
    return None


def status_text(document: Mapping[str, Any]) -> str:
    """The human view of `status`'s document."""
    from mlops.apply import status as status_mod

    return status_mod.render_text(dict(document))


def _live_for_apply(
    ws: Workspace, target: Target, saved: Plan, paths: Sequence[str | Path]
) -> LiveState:
    """Live state over the same models `plan` refreshed, for the staleness check: the specs'
    models (when applying from PATHs) or the plan's own models, plus what mlops manages."""
    from mlops.core import Address
    from mlops.spec import load
    from mlops.state import applied, refresh

    last = applied.read(applied.path_in(ws.state_dir))
    if saved.refreshed:
        return refresh.refresh(target.registry, target.runtime, saved.refreshed, last)
    # Plans written before `refreshed` existed: the best reconstruction of the same set.
    names = {Address(a.address).model for a in saved.actions} | set(saved.models) | set(last)
    if paths:
        names |= {item.name for item in load.load_specs(list(paths), ws.root)}
    return refresh.refresh(target.registry, target.runtime, sorted(names), last)


def down(*, workspace: str | Path | None = None) -> dict[str, bool]:
    """Stop the local target's engine and Prometheus; which of them were running. Idempotent."""
    from mlops import errors
    from mlops import workspace as ws_mod
    from mlops.providers.engine import process as engine_process
    from mlops.providers.metrics import prometheus

    ws = ws_mod.open_workspace(workspace)
    if ws.config.target != "local":
        raise errors.UsageError("mlops down stops the local target only (target: local)")
    # Prometheus first: it would otherwise log scrape failures of the engine going away.
    stopped_prometheus = prometheus.PrometheusServer(ws).stop()
    stopped = {"engine": engine_process.EngineProcess(ws).stop(), "prometheus": stopped_prometheus}
    if ws.config.serve.runtime == "container":
        from mlops.providers.containers import runtime as containers

        stopped["containers"] = containers.ContainerRuntime(ws).stop()  # and the gateway
    return stopped


def manifests(
    paths: Sequence[str | Path] = (),
    *,
    workspace: str | Path | None = None,
    engine: str | None = None,
    model_version: int | None = None,
    image: str | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """The Kubernetes objects (and Triton config) the kubernetes target would apply, per spec;
    `image` (by digest) stands in for a version whose image is not recorded yet."""
    from mlops import workspace as ws_mod
    from mlops.providers.kubernetes import runtime as kubernetes

    ws = ws_mod.open_workspace(workspace)
    options = kubernetes.options_for(ws, engine=engine)
    return kubernetes.render_workspace(ws, paths, options, model_version=model_version, image=image)


def controller_rbac(
    *, workspace: str | Path | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """The controller's ServiceAccount, Role and RoleBinding (least privilege, its namespace
    only) and a note on what they leave out (a Gateway in another namespace), or None."""
    from mlops import workspace as ws_mod
    from mlops.providers.kubernetes import rbac
    from mlops.providers.kubernetes import runtime as kubernetes

    ws = ws_mod.open_workspace(workspace)
    options = kubernetes.options_for(ws)
    return rbac.controller_rbac(options), rbac.gateway_note(options)


def manifests_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """Kubernetes objects as one multi-document YAML text, as `kubectl apply -f` reads it."""
    from mlops.providers.kubernetes import runtime as kubernetes

    return kubernetes.to_yaml([dict(obj) for obj in objects])


# --- live drift and watch ----------------------------------------------------------------------
if TYPE_CHECKING:
    DriftHookResult = _drift_hook.HookResult


def drift_live(
    name: str,
    *,
    version: str | None = None,
    report: str | Path | None = None,
    run_hook: bool = False,
    hook_timeout: float | None = None,
    min_rows: int | None = None,
    save_samples: str | Path | None = None,
    workspace: str | Path | None = None,
    progress: drift_report.Progress | None = None,
) -> drift_report.DriftRun:
    """Feature drift of the inputs the engine sampled from live traffic (every worker's,
    merged) against NAME@version's training statistics (default: the stable version);
    `save_samples`: also write the merged samples there (.npz inside the workspace)."""
    from mlops import workspace as ws_module
    from mlops.drift import live

    ws = ws_module.open_workspace(workspace)
    report_path = _user_path(ws, report, "report") if report is not None else None
    save = _user_path(ws, save_samples, "samples file") if save_samples is not None else None
    return live.execute(
        ws,
        name,
        version=version,
        report_path=report_path,
        report_label=str(report) if report is not None else None,
        run_hook=run_hook,
        hook_timeout=hook_timeout or _drift_hook.DEFAULT_TIMEOUT,
        min_rows=live.MIN_ROWS if min_rows is None else min_rows,
        save=save,
        progress=progress,
    )


def drift_watched(workspace: str | Path | None = None) -> list[str]:
    """The models whose specs the workspace holds: what `mlops watch` checks."""
    from mlops import workspace as ws_module
    from mlops.drift import live

    return sorted({d.name for d in live.deployments(ws_module.open_workspace(workspace))})


def drift_notify(
    run: DriftRun,
    *,
    workspace: str | Path | None = None,
    timeout: float | None = None,
    on_attempt: Callable[[int, str], None] | None = None,
) -> DriftHookResult:
    """Run the spec's on_drift command, or POST to its webhook (retried), once for `run`."""
    from mlops import workspace as ws_module
    from mlops.drift import run as drift_run

    ws = ws_module.open_workspace(workspace)
    return drift_run.notify(
        run, ws.root, None, timeout or _drift_hook.DEFAULT_TIMEOUT, on_attempt=on_attempt
    )


# --- drift views -------------------------------------------------------------------------------


def drift_text(run: DriftRun) -> str:
    from mlops.drift import report as drift_report

    return drift_report.to_text(run)


def drift_json(run: DriftRun) -> dict[str, Any]:
    """The documented JSON document of `mlops drift --format json` (docs/drift.md)."""
    from mlops.drift import report as drift_report

    return drift_report.to_json(run)


# --- validate ----------------------------------------------------------------------------------
if TYPE_CHECKING:
    from mlops.spec import load as spec_load

    SpecProblem = spec_load.Problem


@dataclass(frozen=True)
class SpecCheck:
    """What `validate` found: the specs that loaded, every problem (file:line:col), and the
    workspace's warnings (e.g. a serve address off loopback)."""

    root: Path
    loaded: list[LoadedSpec]
    problems: list[SpecProblem]
    warnings: list[str]

    @property
    def spec_digest(self) -> str | None:
        """The digest a plan of these specs records; None while there are problems."""
        from mlops.spec import load

        return None if self.problems else load.spec_digest(self.loaded)


def validate(
    paths: Sequence[Path] = (), *, workspace: str | Path | None = None, check_files: bool = False
) -> SpecCheck:
    """Load and check spec files (default: the workspace's specs/) and the workspace's
    mlops.yaml; collects every problem instead of raising. Never writes anything."""
    from mlops import errors
    from mlops import workspace as ws_mod
    from mlops.spec import load

    root = Path(workspace).resolve() if workspace else ws_mod.find_root()
    if not root.is_dir():
        raise errors.UsageError(f"workspace {str(root)!r} is not a directory")
    targets = list(paths) or [_display(root / "specs", root)]
    problems: list[SpecProblem] = []
    warnings: list[str] = []
    config = root / ws_mod.CONFIG_FILE
    if config.is_file():
        try:
            warnings = ws_mod.serve_warnings(load.load_workspace_config(_display(config, root)))
        except load.ConfigProblems as exc:
            problems.extend(exc.problems)
    loaded: list[LoadedSpec] = []
    try:
        loaded = load.load_specs(targets, root, check_files=check_files)
    except errors.SpecError as exc:
        problems.extend(p for p in exc.problems if isinstance(p, load.Problem))
    return SpecCheck(root=root, loaded=loaded, problems=problems, warnings=warnings)


def _display(path: Path, root: Path) -> Path:
    """Relative to the current directory when that is inside the workspace (shorter
    messages, and load_specs reads relative paths from there), else absolute."""
    import os

    cwd = Path.cwd().resolve()
    return Path(os.path.relpath(path)) if cwd == root or root in cwd.parents else path
