"""Plan data types: a closed set of action kinds, one typed payload per kind, the plan itself.

`reason` is for display only; nothing decides on it. `before`/`after` are typed payloads,
chosen by the action's `kind` (`PAYLOADS`); apply reads `after` and nothing else, and each
payload carries everything its step needs, so no consumer looks at another action to run one.
The JSON Schema of a plan file is `Plan.model_json_schema()` (`python -m mlops.plan.schema`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WrapSerializer,
    field_validator,
    model_validator,
)

from mlops.core import Address
from mlops.plan import resources
from mlops.spec import models as spec

# A version's engine settings are built below the planner (the kubernetes target renders the
# same ones); they are parts of load and update_config payloads.
from mlops.spec.engine import Batching as Batching
from mlops.spec.engine import EngineSettings as EngineSettings
from mlops.spec.engine import Sha256 as Sha256
from mlops.spec.engine import Warmup as Warmup
from mlops.spec.engine import unset_left_out as _unset_left_out
from mlops.state import models as state

PLAN_FORMAT_VERSION: Final = 2
# Named in every plan file (`schema_version`) and the `$id` of the generated JSON Schema.
PLAN_SCHEMA: Final = "mlops-plan/v2"

# Bounds on what a plan file may hold: it is untrusted input (a file anyone can hand over).
MAX_VERSIONS = 64  # versions in one weight table or loaded list (the engine's own limit)
# What the registry holds is observed, not planned: bounded generously, never below reality.
MAX_ALIASES = 1_000
MAX_REGISTERED = 100_000
MAX_GATES = 64
MAX_TEXT = 4096

Version = Annotated[
    str,
    Field(
        pattern=r"^[0-9A-Za-z][0-9A-Za-z.+-]{0,127}$",
        description="a version of the model (a semantic version)",
    ),
]
ModelName = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")]
Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
Percent = Annotated[int, Field(ge=0, le=100)]
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Alias = Literal["stable", "canary"]
Weights = Annotated[dict[Version, Percent], Field(max_length=MAX_VERSIONS)]


# The spec's gate, written with unset keys left out (as the spec and the engine write them).
Gate = Annotated[spec.Gate, WrapSerializer(_unset_left_out)]


class ActionKind(StrEnum):
    """What one step does. The payload of each kind is the model `PAYLOADS[kind]`."""

    REGISTER = "register"
    VERIFY = "verify"
    CONFORMANCE_TEST = "conformance_test"
    LOAD = "load"
    SET_TRAFFIC = "set_traffic"
    CHECKPOINT_GATE = "checkpoint_gate"
    PROMOTE = "promote"
    RETIRE = "retire"
    UPDATE_CONFIG = "update_config"
    DELETE = "delete"
    SCALE_ENGINE = "scale_engine"
    BUILD_IMAGE = "build_image"
    PUSH_IMAGE = "push_image"


class ChangeSymbol(StrEnum):
    """How an action renders, Terraform-style."""

    CREATE = "+"
    UPDATE = "~"
    DELETE = "-"
    REPLACE = "-/+"
    READ = "<="  # checks and gates: no change to state by themselves


class Payload(BaseModel):
    """Base of every payload: frozen, unknown keys refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# -- payload parts ----------------------------------------------------------------------------


class ValidationData(Payload):
    data: Text = Field(description="the validation set, a workspace-relative path")
    tolerance: float = Field(ge=0, le=1, description="accuracy allowed below the baseline")


# -- payloads, one per kind ---------------------------------------------------------------------


class RegisterPayload(Payload):
    """Store the artifact with everything the registry records about the version."""

    semver: Version
    artifact: Text = Field(description="a workspace-relative path or a models:/ URI")
    sha256: Sha256 | None = Field(
        default=None, description="the spec's pin; null: computed at registration"
    )
    signature: spec.Signature = Field(description="the spec's signature")
    baseline: spec.Baseline = Field(description="the spec's baseline")
    validation: ValidationData | None = Field(default=None, description="null: none declared")


class VerifyPayload(Payload):
    """Re-hash the stored artifact before it is served."""

    semver: Version
    sha256: Sha256 | None = Field(description="expected; null: the one recorded at registration")


class ConformancePayload(Payload):
    """Accuracy and p99 latency against the baseline, the version loaded with no traffic."""

    semver: Version
    metric: Literal["accuracy"] = "accuracy"
    baseline: float = Field(ge=0, le=1, description="the baseline accuracy")
    tolerance: float | None = Field(
        ge=0, le=1, description="accuracy allowed below the baseline; null: the runner's default"
    )
    p99_ms: float = Field(gt=0, allow_inf_nan=False, description="the baseline p99 latency")
    max_increase: float = Field(
        ge=0, le=10, description="p99 allowed above the baseline, a fraction of it"
    )
    validation: Text | None = Field(
        default=None, description="the validation set, a workspace-relative path"
    )
    settings: EngineSettings = Field(description="how the version is loaded for the test")
    replicas: int = Field(default=1, ge=1, le=256, description="engine replicas to start with")


class _Load(Payload):
    semver: Version
    settings: EngineSettings = Field(description="the version's settings.json")
    replicas: int = Field(ge=1, le=256, description="engine replicas")


class LoadPayload(_Load):
    """Load with no traffic (`-/+`: reload the registered bytes, `settings.sha256` set)."""


class UpdateConfigPayload(_Load):
    """Apply batching and replicas in place."""


class ObservedConfig(Payload):
    """A loaded version's settings and replicas as the runtime reported them."""

    semver: Version
    settings: dict[str, Any] = Field(max_length=64, description="as reported, free-form")
    replicas: int = Field(ge=0, description="replicas running")


class TrafficPayload(Payload):
    """The share of requests per version; at 100% the old version leaves the table but stays
    loaded until `retire`."""

    weights: Weights = Field(description="percent of requests per version")
    shadow: state.ShadowRoute | None = Field(
        default=None, description="mirror this percent of requests to a version; null: none"
    )


class CheckpointPayload(Payload):
    """Hold at a weight and judge the gates every interval (durations in seconds)."""

    stable: Version | None = Field(description="the version compared with; null: none")
    canary: Version = Field(description="the version judged")
    weight: Percent = Field(description="the canary's weight during the hold")
    hold: Seconds = Field(description="how long the step holds")
    interval: float = Field(
        default=60.0, gt=0, allow_inf_nan=False, description="seconds between gate rounds"
    )
    min_requests: int = Field(default=100, ge=0, description="requests needed for a verdict")
    consecutive_errors: int = Field(
        default=4, ge=1, le=1000, description="failed rounds in a row that roll back"
    )
    gates: list[Gate] = Field(
        default_factory=list, max_length=MAX_GATES, description="the spec's gates"
    )
    shadow: bool = Field(default=False, description="the shadow phase (weight 0)")


class PromotePayload(Payload):
    """Set aliases and drop those in `clear`: `canary` when a rollout starts, `stable` at
    its end."""

    aliases: dict[Alias, Version] = Field(max_length=2, description="alias -> version")
    clear: list[Alias] = Field(default_factory=list, max_length=2, description="to remove")


class Aliases(Payload):
    """The registry's aliases before the step."""

    aliases: dict[Text, Text] = Field(max_length=MAX_ALIASES, description="alias -> version")


class RetirePayload(Payload):
    """Unload a version that no longer has traffic."""

    semver: Version
    after_seconds: Seconds = Field(
        default=0.0, description="wait first (the rollout's keep_previous, for instant rollback)"
    )


class DeletePayload(Payload):
    """Unload every version of the model, drop its routes and aliases."""

    name: ModelName = Field(description="the model (as `model`)")


class DeleteBefore(Payload):
    """What the model had before the delete."""

    versions: list[Text] = Field(max_length=MAX_REGISTERED, description="registered versions")
    aliases: dict[Text, Text] = Field(max_length=MAX_ALIASES, description="alias -> version")
    loaded: list[Version] = Field(max_length=MAX_VERSIONS, description="loaded versions")
    weights: Weights = Field(description="serving weights")


class EngineModel(Payload):
    """One model the shared engine serves, and what a change of its worker count does to it."""

    name: ModelName
    before: int = Field(ge=0, le=256, description="workers serving it now (0: not served yet)")
    after: int = Field(ge=1, le=256, description="workers serving it after the change")
    min: int | None = Field(default=None, ge=1, le=256, description="its spec's replicas.min")
    max: int | None = Field(
        default=None, ge=1, le=256, description="its spec's replicas.max (null: no spec)"
    )


class ScaleEnginePayload(Payload):
    """Change the worker count of the engine every model shares (local target), live: new
    workers take traffic only once they serve every version with its routing table, surplus
    workers drain first, so no request is lost. Applies to every model in `models`."""

    replicas: int = Field(ge=1, le=64, description="the engine's workers after the change")
    models: list[EngineModel] = Field(
        max_length=MAX_ALIASES, description="every model on the engine, and its change"
    )


class EngineBefore(Payload):
    """The shared engine before the change."""

    replicas: int = Field(ge=0, le=64, description="workers running now")


# mlops.yaml's `images:` as the plan carries it (the spec's patterns): the model's repository
# (images.repository/MODEL) and the base, pinned by digest.
ImageRepository = Annotated[
    str,
    Field(
        pattern=spec.IMAGE_REPOSITORY.pattern,
        max_length=264,
        description="HOST[:PORT]/PATH/MODEL: the repository of the model's images",
    ),
]
ImageBase = Annotated[
    str,
    Field(
        pattern=spec.IMAGE_BASE.pattern,
        description="the base image, pinned by digest (mlops.yaml images.base)",
    ),
]


class BuildImagePayload(Payload):
    """Build the version's image (engine, model and settings baked in), run it on loopback
    and run the conformance test against the running container. Nothing is pushed here; the
    tested image stays in the local store for `push_image`. A no-op when the registry already
    holds an image of these bytes and settings."""

    semver: Version
    sha256: Sha256 | None = Field(
        description="the artifact's sha256; null: the one recorded at registration"
    )
    base: ImageBase
    repository: ImageRepository
    settings: EngineSettings = Field(description="the settings.json baked into the image")
    test: ConformancePayload = Field(description="the conformance test run on the container")


class PushImagePayload(Payload):
    """Push the tested image, read its manifest digest back from the registry and record it
    on the registry version (`image_digest`). Refuses an image that was not tested."""

    semver: Version
    sha256: Sha256 | None = Field(
        description="the artifact's sha256; null: the one recorded at registration"
    )
    base: ImageBase
    repository: ImageRepository
    settings: EngineSettings = Field(description="the settings.json the image was built with")


AfterPayload = (
    RegisterPayload
    | VerifyPayload
    | ConformancePayload
    | LoadPayload
    | TrafficPayload
    | CheckpointPayload
    | PromotePayload
    | RetirePayload
    | UpdateConfigPayload
    | DeletePayload
    | ScaleEnginePayload
    | BuildImagePayload
    | PushImagePayload
)
BeforePayload = TrafficPayload | Aliases | ObservedConfig | DeleteBefore | EngineBefore

# The discriminated union: the action's kind selects its payload models (after, before).
PAYLOADS: dict[ActionKind, tuple[type[Payload], type[Payload] | None]] = {
    ActionKind.REGISTER: (RegisterPayload, None),
    ActionKind.VERIFY: (VerifyPayload, None),
    ActionKind.CONFORMANCE_TEST: (ConformancePayload, None),
    ActionKind.LOAD: (LoadPayload, None),
    ActionKind.SET_TRAFFIC: (TrafficPayload, TrafficPayload),
    ActionKind.CHECKPOINT_GATE: (CheckpointPayload, None),
    ActionKind.PROMOTE: (PromotePayload, Aliases),
    ActionKind.RETIRE: (RetirePayload, None),
    ActionKind.UPDATE_CONFIG: (UpdateConfigPayload, ObservedConfig),
    ActionKind.DELETE: (DeletePayload, DeleteBefore),
    ActionKind.SCALE_ENGINE: (ScaleEnginePayload, EngineBefore),
    ActionKind.BUILD_IMAGE: (BuildImagePayload, None),
    ActionKind.PUSH_IMAGE: (PushImagePayload, None),
}


def _kind_schema(defs: dict[str, Any]) -> list[dict[str, Any]]:
    """The union in JSON Schema terms: for each kind, the models `after`/`before` take."""

    def ref(model: type[Payload]) -> dict[str, str]:
        if model.__name__ not in defs:
            raise LookupError(f"{model.__name__} is not in the generated schema")
        return {"$ref": f"#/$defs/{model.__name__}"}

    cases = []
    for kind, (after, before) in PAYLOADS.items():
        payloads: dict[str, Any] = {
            "after": ref(after),
            "before": {"anyOf": [ref(before), {"type": "null"}]} if before else {"type": "null"},
        }
        cases.append(
            {
                "if": {"properties": {"kind": {"const": kind.value}}, "required": ["kind"]},
                "then": {"properties": payloads},
            }
        )
    return cases


class Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(max_length=512)  # unique within the plan, e.g. "fraud-scorer/03-set_traffic-5"
    address: str = Field(  # mlops.core.Address
        pattern=r"^(deployment|traffic|engine)\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
        r"|^version\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?@[0-9A-Za-z][0-9A-Za-z.+-]{0,127}$",
        description="deployment.NAME, version.NAME@SEMVER, traffic.NAME or engine.NAME (the "
        "shared engine, changed as a step of NAME's plan)",
    )
    model: ModelName = Field(
        default_factory=lambda data: Address(data["address"]).model,
        description="the model the action belongs to (default: the address's)",
    )
    kind: ActionKind
    symbol: ChangeSymbol
    before: BeforePayload | None = None
    after: AfterPayload
    reason: str = Field(default="", max_length=MAX_TEXT)  # display only
    depends_on: list[Annotated[str, Field(max_length=512)]] = Field(
        default_factory=list, max_length=16
    )

    @field_validator("after", mode="before")
    @classmethod
    def _after(cls, value: Any, info: ValidationInfo) -> Any:
        """The kind selects the model: a dict is validated as that kind's payload only."""
        kind = info.data.get("kind")
        if isinstance(value, dict) and isinstance(kind, ActionKind):
            return PAYLOADS[kind][0].model_validate(value)
        return value

    @field_validator("before", mode="before")
    @classmethod
    def _before(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if isinstance(value, dict) and isinstance(kind, ActionKind):
            model = PAYLOADS[kind][1]
            if model is None:
                raise ValueError(f"a {kind} action has no before")
            return model.model_validate(value)
        return value

    @model_validator(mode="after")
    def _matches_kind(self) -> Action:
        after, before = PAYLOADS[self.kind]
        if type(self.after) is not after:
            raise ValueError(f"a {self.kind} action takes a {after.__name__} as after")
        if self.before is not None and (before is None or type(self.before) is not before):
            raise ValueError(f"a {self.kind} action takes no such before")
        if Address(self.address).model != self.model:
            raise ValueError(f"address {self.address} is not of model {self.model}")
        return self


class OutsideChange(BaseModel):
    """Live state that differs from what mlops last applied (changed by hand)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    field: str
    expected: Any = None
    actual: Any = None


class Estimate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    rollout_seconds: float = 0.0  # sum of holds (and shadow phase)
    canary_requests: float | None = None  # expected requests the canary sees at the current rate


class Summary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    add: int = 0
    change: int = 0
    destroy: int = 0
    models: int = 0


class ModelChange(BaseModel):
    """One model's change at a glance, for renderers (the actions hold the detail)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    symbol: ChangeSymbol
    from_version: str | None = None  # stable before the plan
    to_version: str | None = None  # stable after the plan (None: deleted)
    strategy: str | None = None  # canary | shadow | immediate | first | config | restore | delete
    weights: list[int] = Field(default_factory=list)  # canary weight steps, e.g. [5, 10, 50, 100]
    shadow_percent: int | None = None
    reason: str = ""  # display only


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: Literal[2] = PLAN_FORMAT_VERSION
    schema_version: Literal["mlops-plan/v2"] = PLAN_SCHEMA
    created_at: str  # ISO 8601, set by the caller (diff is clock-free)
    workspace: str
    spec_digest: str
    state_fingerprint: str
    actions: list[Action] = Field(default_factory=list)
    # For each model, and for each action id after which a gate can fail: the actions that
    # undo the rollout from that point (weight to 0 first, then unload, aliases, reject).
    rollback: dict[str, dict[str, list[Action]]] = Field(default_factory=dict)
    outside_changes: list[OutsideChange] = Field(default_factory=list)
    estimates: dict[str, Estimate] = Field(default_factory=dict)
    summary: Summary = Summary()
    errors: list[str] = Field(default_factory=list)
    # Display-only notes a reviewer must see (e.g. a model without a spec that was not deleted).
    warnings: list[str] = Field(default_factory=list)
    models: dict[str, ModelChange] = Field(default_factory=dict)
    # The models whose live state the fingerprint covers: apply refreshes exactly these to
    # decide whether the plan is stale.
    refreshed: list[str] = Field(default_factory=list)
    # Replicas x hardware before and after, the canary's peak, rollout hours and cost.
    capacity: resources.Capacity = resources.Capacity()
    # mlops.yaml `environment` (e.g. prod): policy rules may apply to named environments only.
    environment: str | None = Field(default=None, max_length=63)

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The JSON Schema of a plan file, with the payload models each kind takes."""
        schema = super().model_json_schema(*args, **kwargs)
        defs = schema["$defs"]
        defs["Action"]["allOf"] = _kind_schema(defs)
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": PLAN_SCHEMA,
            **schema,
        }
