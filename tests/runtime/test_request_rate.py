"""`mlops_request_rate` read back through the local runtime: per worker from /metrics in the
refresh pass, summed over workers, and carried into `LiveState.traffic_rate`."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from mlops.providers.engine import client as engine_client
from mlops.providers.engine import view as runtime_view
from mlops.providers.engine.runtime import LocalRuntime
from mlops.providers.mlflow.registry import MlflowRegistry
from mlops.state import refresh
from tests.runtime import support
from tests.serving import fixtures

METRICS = """# HELP mlops_request_rate Inference requests per second.
# TYPE mlops_request_rate gauge
mlops_request_rate{model="clf"} 2.5
mlops_request_rate{model="other"} 1e-05
mlops_requests_total{model="clf",version="1.0.0",code="200"} 7.0
mlops_request_rate{model="bad"} x
"""


def test_rates_are_read_from_metrics_text_and_summed_over_workers() -> None:
    found = runtime_view.rates(METRICS)
    assert found == {"clf": 2.5, "other": 1e-05}
    views = [
        runtime_view.WorkerView({}, [], found),
        None,  # a worker that did not answer adds nothing
        runtime_view.WorkerView({}, [], {"clf": 1.5}),
    ]
    assert runtime_view.total_rates(views) == {"clf": 4.0, "other": 1e-05}
    assert runtime_view.rates("") == {}


@pytest.mark.slow
def test_traffic_reaches_live_state(runtime: LocalRuntime, tmp_path: Path) -> None:
    runtime.load(
        "clf", "1.0.0", support.classifier_artifact(tmp_path), fixtures.classifier_settings()
    )
    runtime.set_traffic("clf", {"1.0.0": 100}, None)
    sent = 300
    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 8], "data": [0.1] * 8}]}
    with httpx.Client(base_url=runtime.inference_url()) as client:
        for _ in range(sent):
            assert client.post("/v2/models/clf/infer", json=body).status_code == 200
    # An empty registry that is never created: the refresh needs one, the test does not.
    registry = MlflowRegistry(f"sqlite:///{tmp_path / 'none.db'}", tmp_path / "artifacts")
    live = refresh.refresh(registry, runtime, ["clf", "idle"], {})
    rate = live.traffic_rate["clf"]
    # The first reading weighs the mean since each worker started by 1 - exp(-t/60) <= t/60,
    # so it is above zero and at most the requests sent spread over one minute.
    assert 0 < rate <= sent / 60
    assert "idle" not in live.traffic_rate
    assert live.runtime["clf"].loaded == {"1.0.0": "ready"}
    for url in runtime.worker_admin_urls():
        with engine_client.AdminClient(url) as admin:
            assert 'mlops_request_rate{model="clf"}' in admin.metrics_text()
