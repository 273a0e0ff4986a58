"""`mlops manifests` renders the engine settings the planner puts in `load` actions: one
builder (mlops.spec.engine), below both, so the kubernetes target needs nothing of the plan."""

from __future__ import annotations

from mlops.plan import payloads
from mlops.plan import types as t
from mlops.providers.kubernetes import runtime as k8s
from mlops.spec import engine
from tests.k8s import conftest as c


def test_the_planner_uses_the_one_builder() -> None:
    assert payloads.settings is engine.settings
    assert payloads.engine_settings is engine.engine_settings
    assert t.EngineSettings is engine.EngineSettings and t.Warmup is engine.Warmup


def test_rendered_settings_are_the_load_payloads() -> None:
    for deployment in (c.cpu_spec(), c.gpu_spec()):
        rendered = k8s.version_input(deployment, c.registered(deployment)).settings
        planned = t.LoadPayload(
            semver=deployment.spec.model.version,
            settings=payloads.settings(deployment),
            replicas=payloads.replicas(deployment),
        ).settings.engine_json()
        assert rendered == planned
        assert rendered["warmup"] == {"requests": engine.WARMUP_REQUESTS}
        assert rendered["batching"] == deployment.spec.serving.batching.model_dump(
            mode="json", exclude_none=True
        )
