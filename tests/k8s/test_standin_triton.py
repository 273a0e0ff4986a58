"""The kubernetes target with `kubernetes.engine: triton` on the stand-in cluster, through the
`mlops` CLI: plan -> apply -> a gated canary judged on Triton's metric names -> promote, under
steady load through the proxy with zero failed requests; then an erroring image rolled back
automatically.

Triton cannot run here. The kubelet (tests/k8s/kubelet.py) runs each Triton pod's version as
its own mlops image (same model, same V2 protocol) and, per pod, a stand-in exporter
(tests/k8s/standin.py `EngineAsTriton`) serving that container's live counters in the
recorded Triton /metrics text, with Triton's integer version label; the real Prometheus scrapes
only those exporters, so every gate is answered by the queries compiled for the triton
dialect. The fixtures (podman, registries, API-server double, kubelet, nginx gateway,
Prometheus, trained workspace) are test_standin_canary.py's. What this does not prove:
docs/kubernetes.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import Load
from tests.k8s import conftest as k8s
from tests.k8s import test_standin_canary as canary
from tests.k8s.apiserver import ApiServer
from tests.k8s.kubelet import Kubelet
from tests.k8s.standin import Prometheus

pytestmark = pytest.mark.slow
# The stand-in cluster and its workspace, as test_standin_canary.py builds them.
stack, client, cache, base, example, cluster, ws = (
    canary.stack,
    canary.client,
    canary.cache,
    canary.base,
    canary.example,
    canary.cluster,
    canary.ws,
)
Cluster = tuple[ApiServer, Kubelet, Prometheus]
MODEL = "fraud-scorer"
# Triton's own names, answered by the gates compiled for the triton dialect.
GATES = "[{metric: error_rate, max: 0.02}, {metric: latency_p99, max: 2000}]"


@pytest.fixture(scope="module")
def triton_ws(ws: canary.ClusterWorkspace) -> Iterator[canary.ClusterWorkspace]:
    """The same workspace with `kubernetes.engine: triton` (Triton's image by digest: never
    pulled, the kubelet serves the version's mlops image in its place)."""
    config = ws.root / "mlops.yaml"
    text = config.read_text()
    old = "kubernetes: {namespace: models, gateway_ref: inference}"
    assert old in text, text
    config.write_text(
        text.replace(
            old,
            "kubernetes: {namespace: models, gateway_ref: inference, engine: triton, "
            f"image: '{k8s.TRITON}'}}",
        )
    )
    yield ws


def _query(prometheus: Prometheus, query: str) -> list[dict[str, object]]:
    body = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}).json()
    return list(body["data"]["result"])


def test_triton_canary_promotes_through_the_proxy(
    triton_ws: canary.ClusterWorkspace, cluster: Cluster
) -> None:
    server, kubelet, prometheus = cluster
    ws = triton_ws
    ws.spec("1.0.0")
    plan = ws.mlops("plan", "specs/").output
    assert "build_image" in plan and "push_image" in plan, plan
    ws.mlops("apply", "--auto-approve", "specs/")
    assert kubelet.errors == []
    deployment = server.store[("deployments", "models", "fraud-scorer-v1-0-0")]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == k8s.TRITON and container["command"][0] == "tritonserver"
    first_number = deployment["metadata"]["annotations"]["mlops.dev/model-version"]
    assert ws.model()["weights"] == {"1.0.0": 100}

    ws.spec("1.1.0", steps=[(10, 3.0), (50, 3.0), (100, 0.0)], gates=GATES, min_requests=5)
    with Load(ws, rate=60.0, duration=400.0) as load:
        load.wait_answers(50)
        result = ws.mlops("apply", "--auto-approve", "specs/")
        load.wait_answers(50)
    summary = load.summary
    assert summary is not None
    print(f"\ntriton canary 1.0.0 -> 1.1.0 through the proxy: {summary.to_dict()}")
    assert summary.failed == 0, summary.to_dict()
    assert summary.by_version["1.0.0"] > 0 and summary.by_version["1.1.0"] > 0
    for weight in (10, 50):
        assert f"{weight}%" in result.output, result.output
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
    assert list(kubelet.workloads) == ["fraud-scorer-v1-1-0"]
    assert kubelet.errors == []
    # The gates read Triton's series, labelled by Triton's integer version; the engines'
    # own metrics were never scraped.
    # (over the last minutes: a deleted pod's series went stale with its scrape target)
    served = _query(
        prometheus, f'max_over_time(nv_inference_request_success{{model="{MODEL}"}}[5m])'
    )
    numbers = {str(row["metric"]["version"]) for row in served}  # type: ignore[index]
    live = server.store[("deployments", "models", "fraud-scorer-v1-1-0")]
    assert numbers >= {first_number, live["metadata"]["annotations"]["mlops.dev/model-version"]}
    assert all(number.isdigit() for number in numbers), numbers
    assert _query(prometheus, "max_over_time(mlops_requests_total[5m])") == []
    assert "No changes" in ws.mlops("plan", "specs/").output


def test_triton_erroring_image_is_rolled_back_automatically(
    triton_ws: canary.ClusterWorkspace, cluster: Cluster
) -> None:
    kubelet, prometheus = cluster[1], cluster[2]
    ws = triton_ws
    if ws.model().get("stable") != "1.1.0":
        pytest.skip("needs the promoted 1.1.0 of the test before")
    ws.spec(
        "1.2.0",
        artifact="erroring.onnx",
        accuracy_of="1.1.0",
        steps=[(25, 5.0), (100, 0.0)],
        gates=GATES,
        min_requests=5,
    )
    # Every 7th request is poisoned (the erroring model fails it): 7 is prime to nginx's
    # 4-request weighted cycle at 25%, so the canary sees poisoned rows.
    with Load(ws, rate=60.0, duration=400.0, poison_every=7) as load:
        load.wait_answers(30)
        result = ws.mlops("apply", "--auto-approve", "specs/", expect=3)
    assert "gate failed at 25%: error_rate" in result.output, result.output
    model = ws.model()
    assert model["stable"] == "1.1.0" and model["weights"] == {"1.1.0": 100}
    assert list(kubelet.workloads) == ["fraud-scorer-v1-1-0"]
    summary = load.summary
    assert summary is not None
    print(f"\ntriton rollback of the erroring 1.2.0: {summary.to_dict()}")
    assert set(summary.by_code) <= {"200", "500"}
    assert summary.by_version.get("1.1.0", 0) > 0
    # The failures the gate saw are Triton's: nv_inference_request_failure, reason BACKEND.
    query = 'max_over_time(nv_inference_request_failure{reason="BACKEND"}[5m]) > 0'
    failed = _query(prometheus, query)
    assert failed, "no Triton failure series was scraped"
