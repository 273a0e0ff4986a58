"""The V2 front door over real HTTP: plain requests, tritonclient, bad input, metrics."""

from __future__ import annotations

import json
import re

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.serving import fixtures
from tests.serving.conftest import EngineThread, infer_body


def test_health_server_and_model_metadata(client: httpx.Client) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").status_code == 200
    assert "model_repository" in client.get("/v2").json()["extensions"]
    meta = client.get("/v2/models/clf").json()
    assert meta["versions"] == ["1.0.0", "1.1.0"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 8]}]
    assert client.get("/v2/models/clf/versions/1.0.0/ready").json()["ready"] is True
    assert client.get("/v2/models/nope").status_code == 404


def test_plain_json_inference_with_headers(client: httpx.Client) -> None:
    r = client.post(
        "/v2/models/clf/versions/1.0.0/infer",
        json=infer_body(rows=3),
        headers={"x-request-id": "abc-1"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"] == "abc-1"
    assert r.headers["x-mlops-version"] == "1.0.0"
    out = r.json()["outputs"][0]
    assert out["name"] == "probabilities" and out["shape"] == [3, 2]
    assert np.allclose(np.array(out["data"]).reshape(3, 2).sum(axis=1), 1.0)


def test_unversioned_request_gets_a_generated_request_id(client: httpx.Client) -> None:
    r = client.post("/v2/models/clf/infer", json=infer_body())
    assert r.status_code == 200
    assert r.headers["x-request-id"]
    assert r.headers["x-mlops-version"] in ("1.0.0", "1.1.0")


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_works_unchanged(engine: EngineThread, binary: bool) -> None:
    client = triton.InferenceServerClient(engine.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("clf", "1.1.0")
    x = np.random.default_rng(0).normal(size=(4, fixtures.FEATURES)).astype(np.float32)
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = triton.InferRequestedOutput("probabilities", binary_data=binary)
    result = client.infer("batched", [tensor], outputs=[wanted], request_id="t-1")
    probabilities = result.as_numpy("probabilities")
    assert probabilities is not None and probabilities.shape == (4, 2)
    assert result.get_response()["id"] == "t-1"
    # No outputs named: tritonclient asks for every output in binary.
    everything = client.infer("clf", [tensor], model_version="1.0.0").as_numpy("probabilities")
    assert everything is not None and np.allclose(everything.sum(axis=1), 1.0)


def test_tritonclient_repository_extension(engine: EngineThread) -> None:
    client = triton.InferenceServerClient(engine.url.removeprefix("http://"))
    index = client.get_model_repository_index()
    row = next(r for r in index if (r["name"], r["version"]) == ("clf", "1.0.0"))
    assert row["state"] == "READY" and row["reason"] == ""
    assert len(row["sha256"]) == 64  # the digest of the file the session was built from


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("/v2/models/clf/versions/1.0.0/infer", b"{oops", 400, "malformed JSON"),
        ("/v2/models/clf/versions/1.0.0/infer", infer_body(features=3), 400, "shape"),
        ("/v2/models/clf/versions/1.0.0/infer", infer_body(value=float("nan")), 400, "JSON"),
        ("/v2/models/nope/infer", infer_body(), 404, "unknown model"),
        ("/v2/models/clf/versions/9.9.9/infer", infer_body(), 404, "version 9.9.9 is not found"),
    ],
)
def test_bad_input_gets_a_one_line_error(
    client: httpx.Client, path: str, body: object, status: int, reason: str
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()  # allows NaN
    r = client.post(path, content=content)
    assert r.status_code == status
    error = r.json()["error"]
    assert reason in error and "\n" not in error and "Traceback" not in error
    assert "x-request-id" in r.headers


def test_wrong_dtype_and_nan_in_binary_data(client: httpx.Client) -> None:
    body = infer_body()
    body["inputs"][0]["datatype"] = "FP64"
    r = client.post("/v2/models/clf/versions/1.0.0/infer", json=body)
    assert r.status_code == 400 and "expects FP32" in r.json()["error"]
    x = np.full((1, fixtures.FEATURES), np.nan, dtype=np.float32)
    header = (
        b'{"inputs":[{"name":"input","datatype":"FP32","shape":[1,%d],'
        b'"parameters":{"binary_data_size":%d}}]}' % (fixtures.FEATURES, x.nbytes)
    )
    r = client.post(
        "/v2/models/clf/versions/1.0.0/infer",
        content=header + x.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 400 and "NaN" in r.json()["error"]


def test_oversized_body_is_413(client: httpx.Client) -> None:
    r = client.post("/v2/models/clf/versions/1.0.0/infer", content=b" " * (2 << 20))
    assert r.status_code == 413


def test_runtime_failure_is_a_500_without_traceback_and_the_worker_lives(
    client: httpx.Client,
) -> None:
    bad = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [7, 0, 0, 0]}]}
    good = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [0.5] * 4}]}
    r = client.post("/v2/models/err/infer", json=bad)
    assert r.status_code == 500
    assert r.json()["error"].startswith("model failed:") and "\n" not in r.json()["error"]
    assert client.post("/v2/models/err/infer", json=good).status_code == 200
    metrics = client.get("/metrics").text
    assert re.search(
        r'mlops_requests_total\{code="500",model="err",route="routed",version="1.0.0"\} [1-9]',
        metrics,
    )


def test_input_errors_are_counted_under_their_own_code(client: httpx.Client) -> None:
    client.post("/v2/models/batched/infer", content=b"{oops")
    metrics = client.get("/metrics").text
    assert re.search(
        r'mlops_requests_total\{code="400",model="batched",route="routed",version="1.0.0"\}',
        metrics,
    )
    assert not re.search(r'code="500",model="batched"', metrics)


def test_metrics_have_the_contract_names(client: httpx.Client) -> None:
    client.post("/v2/models/batched/infer", json=infer_body())
    text = client.get("/metrics").text
    for name in (
        "mlops_requests_total",
        "mlops_request_duration_seconds_bucket",
        "mlops_queue_depth",
        "mlops_feedback_total",
    ):
        assert name in text
    for stage in ("decode", "preprocess", "inference", "postprocess"):
        assert f'mlops_stage_duration_seconds_count{{model="batched",stage="{stage}"' in text


def test_feedback_is_attributed_to_the_serving_version(client: httpx.Client) -> None:
    r = client.post("/v2/models/batched/infer", json=infer_body(), headers={"x-request-id": "fb-1"})
    assert r.status_code == 200
    assert client.post("/v2/feedback", json={"request_id": "fb-1", "value": 1}).status_code == 200
    assert client.post("/v2/feedback", json={"request_id": "never", "value": 1}).status_code == 404
    text = client.get("/metrics").text
    assert re.search(r'mlops_feedback_total\{model="batched",version="1.0.0"\} [1-9]', text)


def test_shadow_agreement_is_counted(client: httpx.Client, admin: httpx.Client) -> None:
    r = admin.put(
        "/v2/routing/clf",
        json={
            "weights": {"1.0.0": 100, "1.1.0": 0},
            "shadow": {"version": "1.1.0", "percent": 100},
        },
    )
    assert r.status_code == 200
    for _ in range(20):
        assert (
            client.post("/v2/models/clf/infer", json=infer_body()).headers["x-mlops-version"]
            == "1.0.0"
        )
    admin.put("/v2/routing/clf", json={"weights": {"1.0.0": 100}, "shadow": None})
    text = client.get("/metrics").text
    mirrored = re.search(
        r'mlops_shadow_requests_total\{code="200",model="clf",version="1.1.0"\} (\S+)', text
    )
    agreed = re.findall(
        r'mlops_shadow_agreement_total\{agree="(true|false)",model="clf",version="1.1.0"\} (\S+)',
        text,
    )
    assert mirrored and float(mirrored.group(1)) >= 20
    assert sum(float(n) for _, n in agreed) == float(mirrored.group(1))


def test_batching_merges_concurrent_requests(engine: EngineThread) -> None:
    import concurrent.futures

    x = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, fixtures.SLOW_WIDTH],
                     "data": [0.01] * fixtures.SLOW_WIDTH}]}  # fmt: skip

    def hammer(_: int) -> int:
        with httpx.Client(base_url=engine.url, timeout=30) as c:
            return sum(
                c.post("/v2/models/slow/infer", json=x).status_code == 200 for _ in range(15)
            )

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(hammer, range(8))) == 120
    stats = engine.engine.stats.get("slow", "1.0.0")
    assert stats.batched_requests >= 120
    assert stats.batches < stats.batched_requests  # some runs carried more than one request


def test_routing_api_round_trip(admin: httpx.Client) -> None:
    before = admin.get("/v2/routing").json()
    g = before["generation"] + 10
    r = admin.put("/v2/routing/clf", json={"weights": {"1.0.0": 60, "1.1.0": 40}, "generation": g})
    assert r.json() == {"generation": g}
    after = admin.get("/v2/routing").json()
    assert after["generation"] == g
    assert after["models"]["clf"]["weights"] == {"1.0.0": 60, "1.1.0": 40}
    assert (
        admin.put(
            "/v2/routing/clf", json={"weights": {"1.0.0": 1}, "generation": g - 1}
        ).status_code
        == 409
    )
    assert admin.put("/v2/routing/clf", json={"weights": {"9.0.0": 1}}).status_code == 409
    admin.put("/v2/routing/clf", json={"weights": {"1.0.0": 100}})
