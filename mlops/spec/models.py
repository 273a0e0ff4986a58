"""Pydantic models of the spec YAML: frozen, `extra="forbid"`, every rule users expect.

Durations are stored as seconds (float); `mlops.core.format_duration` renders them back.
"""

from __future__ import annotations

import itertools
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

import semver
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from mlops import core
from mlops.spec import refs

API_VERSION = "mlops/v1"
KIND = "ModelDeployment"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_TENSOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_QUANTITY = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
_ACCELERATOR = re.compile(r"^(none|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$")
# Container image reference: [registry/]path[:tag][@sha256:digest], lower-case path.
IMAGE_REFERENCE = re.compile(
    r"^[a-z0-9]+([._/:-][a-z0-9]+)*(:[\w][\w.-]{0,127})?(@sha256:[0-9a-f]{64})?$"
)
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*"
_HOSTNAME = re.compile(rf"^(\*\.)?{_DNS_SUBDOMAIN}$")
_LABEL_KEY = re.compile(rf"^({_DNS_SUBDOMAIN}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{{0,61}}[A-Za-z0-9])?$")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


def _dns1123(value: str) -> str:
    if len(value) > 63:
        raise ValueError("must be at most 63 characters (DNS-1123 label)")
    if not _DNS1123_LABEL.match(value):
        raise ValueError(
            "must be a DNS-1123 label: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


def _semver(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # YAML reads `version: 2.3` as a float; say so rather than a confusing type error.
        raise ValueError(f"{value!r} is not a semantic version (MAJOR.MINOR.PATCH); quote it")
    if not isinstance(value, str):
        raise ValueError("must be a semantic version string such as 2.3.1")
    try:
        semver.Version.parse(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a semantic version (MAJOR.MINOR.PATCH, e.g. 2.3.1)"
        ) from None
    return value


def _duration(value: Any) -> float:
    if isinstance(value, str | int | float):
        return core.parse_duration(value)
    raise ValueError("must be a duration such as 500ms, 30s, 5m or 2h")


DnsName = Annotated[str, AfterValidator(_dns1123)]
SemVer = Annotated[str, BeforeValidator(_semver)]
Duration = Annotated[float, BeforeValidator(_duration)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class DType(StrEnum):
    """KServe V2 tensor data types."""

    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


class Metadata(Frozen):
    name: DnsName


class TensorSpec(Frozen):
    name: str
    dtype: DType
    shape: list[int] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TENSOR_NAME.match(value):
            raise ValueError("tensor names start with a letter or '_' and use [A-Za-z0-9_.:/-]")
        return value

    @field_validator("shape")
    @classmethod
    def _shape(cls, value: list[int]) -> list[int]:
        for dim in value:
            if dim != -1 and dim < 1:
                raise ValueError(f"dimension {dim} is invalid: use a positive integer or -1")
        return value


class Signature(Frozen):
    inputs: list[TensorSpec] = Field(min_length=1)
    outputs: list[TensorSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Signature:
        for kind, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            names = [t.name for t in tensors]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} tensor name(s): {', '.join(dupes)}")
        return self


class Baseline(Frozen):
    metric: Literal["accuracy"] = "accuracy"
    value: Fraction
    p99_ms: float = Field(gt=0)


class Validation(Frozen):
    data: str = Field(min_length=1)
    tolerance: Fraction = 0.005

    @field_validator("data")
    @classmethod
    def _data(cls, value: str) -> str:
        refs.check_local(value, "validation data")
        if not value.endswith((".npz", ".csv", ".parquet")):
            raise ValueError("validation data must be a .npz, .csv or .parquet file")
        return value


class ModelSection(Frozen):
    version: SemVer
    artifact: str = Field(min_length=1)
    sha256: str | None = None
    format: Literal["onnx"] = "onnx"
    signature: Signature
    baseline: Baseline
    validation: Validation | None = None

    @field_validator("sha256")
    @classmethod
    def _sha(cls, value: str | None) -> str | None:
        if value is not None and not _SHA256.match(value):
            raise ValueError("sha256 must be 64 lowercase hex characters")
        return value

    @field_validator("artifact")
    @classmethod
    def _artifact(cls, value: str) -> str:
        # The checks apply uses too (providers.mlflow.artifact_refs): nothing valid here fails.
        return refs.check_artifact(value)

    @property
    def semver(self) -> semver.Version:
        return semver.Version.parse(self.version)


class Hardware(Frozen):
    cpu: float = Field(default=1.0, gt=0, le=256)
    memory: str = "1Gi"
    accelerator: str = "none"
    count: int = Field(default=0, ge=0, le=16)

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not _QUANTITY.match(value):
            raise ValueError("memory must be a Kubernetes quantity such as 512Mi or 2Gi")
        return value

    @field_validator("accelerator")
    @classmethod
    def _accelerator(cls, value: str) -> str:
        if not _ACCELERATOR.match(value):
            raise ValueError("accelerator must be 'none' or a name such as nvidia-t4")
        return value

    @model_validator(mode="after")
    def _count(self) -> Hardware:
        if self.accelerator == "none" and self.count:
            raise ValueError("count is set but accelerator is 'none'")
        return self


class Replicas(Frozen):
    min: int = Field(default=1, ge=1, le=64)
    max: int = Field(default=1, ge=1, le=256)

    @model_validator(mode="after")
    def _order(self) -> Replicas:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class Autoscaling(Frozen):
    metric: Literal["queue_depth", "gpu_utilization"] = "queue_depth"
    target: float = Field(gt=0)
    # Local target (docs/monitoring-gates.md): the wait after any change before adding a
    # worker, and how long the load must stay low (and no change happen) before removing one.
    scale_up_cooldown: Duration = 15.0
    scale_down_cooldown: Duration = 120.0

    @field_validator("scale_up_cooldown", "scale_down_cooldown")
    @classmethod
    def _cooldown(cls, value: float) -> float:
        if not 0 < value <= 86_400:
            raise ValueError("cool-downs are between 0s and 24h")
        return value


class Batching(Frozen):
    max_batch_size: int = Field(default=1, ge=1, le=4096)
    max_queue_delay_ms: float = Field(default=0, ge=0, le=10_000)
    preferred_batch_sizes: list[int] | None = None
    max_queue_size: int = Field(default=256, ge=1, le=100_000)

    @model_validator(mode="after")
    def _preferred(self) -> Batching:
        for size in self.preferred_batch_sizes or []:
            if not 1 <= size <= self.max_batch_size:
                raise ValueError(f"preferred batch size {size} is outside 1..max_batch_size")
        return self


class Serving(Frozen):
    hardware: Hardware = Hardware()
    replicas: Replicas = Replicas()
    autoscaling: Autoscaling | None = None
    batching: Batching = Batching()


class Strategy(StrEnum):
    CANARY = "canary"
    SHADOW = "shadow"
    IMMEDIATE = "immediate"


class Step(Frozen):
    weight: int = Field(ge=1, le=100)
    hold: Duration = 0.0


class ShadowPhase(Frozen):
    percent: int = Field(default=100, ge=1, le=100)
    hold: Duration = 0.0


class Gate(Frozen):
    """A metric condition. Named metrics use `max`, `min` or `max_increase`; PromQL uses `query`.

    `positive_rate` is a business gate on /v2/feedback outcomes (value 1 positive, 0 negative:
    the rate is the mean reported value): `min` and/or `max_decrease` (relative to the stable
    version's rate), judged once `min_outcomes` outcomes were reported (docs/monitoring-gates.md).
    """

    metric: (
        Literal["error_rate", "latency_p99", "latency_p50", "shadow_agreement", "positive_rate"]
        | None
    ) = None
    name: DnsName | None = None
    query: str | None = None
    min: float | None = None
    max: float | None = None
    max_increase: float | None = Field(default=None, ge=0, le=10)
    max_decrease: float | None = Field(default=None, ge=0, le=1)
    min_outcomes: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _shape(self) -> Gate:
        if (self.metric is None) == (self.query is None):
            raise ValueError("a gate needs exactly one of 'metric' (a known metric) or 'query'")
        if self.metric != "positive_rate" and (
            self.max_decrease is not None or self.min_outcomes is not None
        ):
            raise ValueError("max_decrease and min_outcomes apply only to positive_rate")
        if self.query is not None:
            if not self.name:
                raise ValueError("a query gate needs a 'name'")
            if not self.query.strip():
                raise ValueError("query must not be empty")
            if self.min is None and self.max is None:
                raise ValueError("a query gate needs 'min' and/or 'max'")
            if self.max_increase is not None:
                raise ValueError("max_increase applies only to latency metrics")
        elif self.metric in ("error_rate", "shadow_agreement", "positive_rate"):
            if self.max_increase is not None:
                raise ValueError(f"max_increase does not apply to {self.metric}")
            for bound in (self.min, self.max):
                if bound is not None and not 0.0 <= bound <= 1.0:
                    raise ValueError(f"{self.metric} thresholds are fractions between 0 and 1")
            if self.min is None and self.max is None and self.max_decrease is None:
                extra = " or 'max_decrease'" if self.metric == "positive_rate" else ""
                raise ValueError(f"{self.metric} needs 'min' or 'max'{extra}")
        else:
            if self.min is not None:
                raise ValueError(f"{self.metric} takes 'max' (ms) or 'max_increase', not 'min'")
            if self.max is None and self.max_increase is None:
                raise ValueError(f"{self.metric} needs 'max' (ms) or 'max_increase' (fraction)")
            if self.max is not None and self.max <= 0:
                raise ValueError(f"{self.metric} max must be a positive number of milliseconds")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is above max ({self.max})")
        return self

    @property
    def label(self) -> str:
        return self.name or self.metric or "query"

    @property
    def relative(self) -> bool:
        """Judged against the stable version (its sample is measured too)."""
        return self.max_increase is not None or self.max_decrease is not None


DEFAULT_GATES = (
    Gate(metric="error_rate", max=0.001),
    Gate(metric="latency_p99", max_increase=0.20),
)


class Rollout(Frozen):
    strategy: Strategy = Strategy.CANARY
    steps: list[Step] = Field(
        default_factory=lambda: [
            Step(weight=5, hold=300.0),
            Step(weight=10, hold=600.0),
            Step(weight=50, hold=900.0),
            Step(weight=100),
        ]
    )
    interval: Duration = 60.0
    shadow: ShadowPhase | None = None
    gates: list[Gate] = Field(default_factory=list)
    min_requests: int = Field(default=100, ge=0)
    consecutive_errors: int = Field(default=4, ge=1, le=1000)
    # How long the previous version stays loaded (no weight) after promotion, for instant rollback.
    keep_previous: Duration = 600.0

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[Step]) -> list[Step]:
        if not steps:
            raise ValueError("at least one step is required (the last has weight 100)")
        for before, after in itertools.pairwise(steps):
            if after.weight <= before.weight:
                raise ValueError(
                    f"weights must increase strictly: {before.weight} then {after.weight}"
                )
        if steps[-1].weight != 100:
            raise ValueError(f"the last step must have weight 100, not {steps[-1].weight}")
        return steps

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("interval must be positive")
        return value

    @model_validator(mode="after")
    def _shadow(self) -> Rollout:
        if self.strategy is Strategy.SHADOW and self.shadow is None:
            object.__setattr__(self, "shadow", ShadowPhase())
        return self

    @property
    def effective_gates(self) -> tuple[Gate, ...]:
        """Declared gates, or the standard defaults for a gated rollout that declares none."""
        if self.gates:
            return tuple(self.gates)
        if self.strategy is Strategy.IMMEDIATE:
            return ()
        return DEFAULT_GATES


class OnDrift(Frozen):
    """What runs once per drift episode: a command, or a POST of the drift as JSON to a
    webhook URL (docs/monitoring.md)."""

    command: str | None = Field(default=None, min_length=1, max_length=4096)
    webhook: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+[^\s]{0,2000}$")

    @model_validator(mode="after")
    def _one(self) -> OnDrift:
        if (self.command is None) == (self.webhook is None):
            raise ValueError("on_drift needs exactly one of 'command' or 'webhook'")
        return self


class Drift(Frozen):
    threshold_sigma: float = Field(default=2.0, gt=0, le=100)
    on_drift: OnDrift | None = None


class Monitoring(Frozen):
    drift: Drift = Drift()


class DeploymentSpec(Frozen):
    model: ModelSection
    serving: Serving = Serving()
    rollout: Rollout = Rollout()
    monitoring: Monitoring = Monitoring()


class ModelDeployment(Frozen):
    """One `kind: ModelDeployment` document."""

    apiVersion: Literal["mlops/v1"]  # the YAML key
    kind: Literal["ModelDeployment"]
    metadata: Metadata
    spec: DeploymentSpec

    @property
    def name(self) -> str:
        return self.metadata.name


class WorkspaceServe(Frozen):
    host: str = "127.0.0.1"
    port: int = Field(default=8480, ge=1, le=65535)
    # process: the engine runs as local processes (default); container: each version runs as
    # its built image (`images:` required), so what is tested locally is what ships.
    runtime: Literal["process", "container"] = "process"


# name[:tag]@sha256:<64 hex>; the tag is informative only, the digest is what is used.
IMAGE_BASE = re.compile(r"^[a-z0-9][a-z0-9._:/-]{0,250}@sha256:[0-9a-f]{64}$")
# HOST[:PORT]/PATH: where model images are pushed (REPOSITORY/MODEL).
IMAGE_REPOSITORY = re.compile(r"^[a-z0-9][a-z0-9.-]*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)+$")


class WorkspaceImages(Frozen):
    """`images:` of mlops.yaml: build one image per model version (docs/images.md)."""

    base: str  # e.g. python:3.12-slim@sha256:...
    repository: str  # e.g. registry.example.com/team; images are REPOSITORY/MODEL

    @field_validator("base")
    @classmethod
    def _base(cls, value: str) -> str:
        if not IMAGE_BASE.match(value):
            raise ValueError(
                f"images.base {value!r} must be pinned by digest (NAME[:TAG]@sha256:<64 hex>)"
            )
        return value

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        host = value.split("/", 1)[0]
        has_host = "." in host or ":" in host or host == "localhost"
        if not IMAGE_REPOSITORY.match(value) or len(value) > 200 or not has_host:
            raise ValueError(f"images.repository {value!r} must be HOST[:PORT]/PATH in lower case")
        return value


class WorkspaceKubernetes(Frozen):
    """The kubernetes target's cluster-side settings (docs/kubernetes.md). Pods run each
    version's own image, by the digest recorded on the registry version (`images:` builds it);
    `image` is the Triton image when `engine: triton`, pinned by digest."""

    context: str | None = None
    namespace: DnsName = "default"
    gateway_ref: str | None = None
    engine: Literal["triton", "mlops"] = "mlops"
    image: str | None = None  # engine: triton only: tritonserver@sha256:...
    fetch_image: str | None = None  # retired: refused with the reason
    registry_uri: str | None = None  # retired: refused with the reason
    hostnames: list[str] = Field(default_factory=list)
    accelerator_label: str | None = None  # node label carrying the GPU model

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_REFERENCE.match(value):
            raise ValueError(f"{value!r} is not an image reference such as repo/name@sha256:...")
        if value is not None and not re.search(r"@sha256:[0-9a-f]{64}$", value):
            raise ValueError(f"{value!r} must be pinned by digest: NAME@sha256:<64 hex>")
        return value

    @field_validator("fetch_image", "registry_uri")
    @classmethod
    def _retired(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(
                "no longer used: pods run the version's own image by digest (no registry fetch);"
                " configure images: in mlops.yaml so apply builds it"
            )
        return value

    @field_validator("hostnames")
    @classmethod
    def _hostnames(cls, value: list[str]) -> list[str]:
        for host in value:
            if not _HOSTNAME.match(host) or len(host) > 253:
                raise ValueError(f"{host!r} is not a hostname (wildcard only as '*.' prefix)")
        return value

    @field_validator("accelerator_label")
    @classmethod
    def _label(cls, value: str | None) -> str | None:
        if value is not None and not _LABEL_KEY.match(value):
            raise ValueError(f"{value!r} is not a label key such as example.com/gpu")
        return value


_CURRENCY = re.compile(r"^[A-Z]{3}$")
Price = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]


class WorkspaceCosts(Frozen):
    """`costs:` of mlops.yaml: prices per hour that plans show capacity in (docs/pr-workflow.md)."""

    currency: str = "USD"
    cpu_hour: Price = 0.0  # one core for one hour
    memory_gib_hour: Price = 0.0  # one GiB for one hour
    accelerator_hour: dict[str, Price] = Field(default_factory=dict, max_length=64)  # by name

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not _CURRENCY.match(value):
            raise ValueError("currency is a three-letter code such as USD or EUR")
        return value

    @field_validator("accelerator_hour")
    @classmethod
    def _accelerators(cls, value: dict[str, float]) -> dict[str, float]:
        for name in value:
            if name == "none" or not _ACCELERATOR.match(name) or len(name) > 63:
                raise ValueError(f"{name!r} is not an accelerator name such as nvidia-t4")
        return value


class WorkspaceConfig(Frozen):
    """`mlops.yaml`: every key optional."""

    target: Literal["local", "kubernetes"] = "local"
    registry_uri: str | None = None  # default: sqlite:///<workspace>/.mlops/mlflow.db
    metrics: str = "builtin"  # "builtin", "prometheus" (started by mlops) or a Prometheus URL
    serve: WorkspaceServe = WorkspaceServe()
    kubernetes: WorkspaceKubernetes = WorkspaceKubernetes()
    images: WorkspaceImages | None = None  # null: no images are built
    costs: WorkspaceCosts | None = None  # null: plans show capacity without prices
    environment: DnsName | None = None  # e.g. prod: policy rules may name environments

    @model_validator(mode="after")
    def _container_needs_images(self) -> WorkspaceConfig:
        if self.serve.runtime == "container" and self.images is None:
            raise ValueError("serve.runtime: container needs an images: section (base, repository)")
        return self

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: str) -> str:
        if value in ("builtin", "prometheus") or re.match(r"^https?://[^\s]+$", value):
            return value
        raise ValueError("metrics must be 'builtin', 'prometheus' or a Prometheus http(s) URL")
