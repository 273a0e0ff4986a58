"""Triton's own HTTP clients against a real `mlops serve` process.

The calls are those of triton-inference-server/client's Python examples
(simple_http_infer_client, simple_http_async_infer_client, simple_http_aio_infer_client,
simple_http_health_metadata), made with `tritonclient.http` against the `simple` model those
examples expect: INPUT0 and INPUT1, INT32 [1, 16], OUTPUT0 = sum and OUTPUT1 = difference.
Then the statistics and model configuration extensions field by field.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from onnx import TensorProto, helper
from tritonclient.utils import InferenceServerException

from tests.serving import fixtures
from tests.serving.conftest import free_port

pytestmark = pytest.mark.slow

MLOPS = [sys.executable, "-c", "from mlops.cli import main; main()"]
MODEL = "simple"
MAX_BATCH = 8


def simple_bytes() -> bytes:
    """Triton's `simple` example model as ONNX: element-wise sum and difference."""
    tensor = [None, 16]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"]),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"]),
        ],
        "simple",
        [
            helper.make_tensor_value_info("INPUT0", TensorProto.INT32, tensor),
            helper.make_tensor_value_info("INPUT1", TensorProto.INT32, tensor),
        ],
        [
            helper.make_tensor_value_info("OUTPUT0", TensorProto.INT32, tensor),
            helper.make_tensor_value_info("OUTPUT1", TensorProto.INT32, tensor),
        ],
    )
    return fixtures._serialize(graph)


def simple_settings() -> dict[str, Any]:
    def spec(name: str) -> dict[str, Any]:
        return {"name": name, "dtype": "INT32", "shape": [-1, 16]}

    return {
        "signature": {
            "inputs": [spec("INPUT0"), spec("INPUT1")],
            "outputs": [spec("OUTPUT0"), spec("OUTPUT1")],
        },
        "batching": {"max_batch_size": MAX_BATCH, "max_queue_delay_ms": 1},
        "classification": False,
    }


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of a real engine process serving `simple` version 1 (as tritonclient
    takes it: no scheme)."""
    root = tmp_path_factory.mktemp("triton")
    repo, state = root / "repo", root / "state"
    fixtures.write_version(repo, MODEL, "1", simple_bytes(), simple_settings())
    port = free_port()
    command = [
        *MLOPS, "serve", "--repository", str(repo), "--port", str(port),
        "--state-dir", str(state),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://{address}/v2/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                assert proc.stderr is not None
                raise AssertionError(f"engine did not start: {proc.stderr.read().decode()}")
            time.sleep(0.1)
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


INPUT0 = np.expand_dims(np.arange(16, dtype=np.int32), axis=0)
INPUT1 = np.full(shape=(1, 16), fill_value=-1, dtype=np.int32)


def _inputs(module: Any, binary0: bool, binary1: bool) -> list[Any]:
    inputs = [
        module.InferInput("INPUT0", [1, 16], "INT32"),
        module.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(INPUT0, binary_data=binary0)
    inputs[1].set_data_from_numpy(INPUT1, binary_data=binary1)
    return inputs


def _outputs(module: Any) -> list[Any]:
    return [
        module.InferRequestedOutput("OUTPUT0", binary_data=True),
        module.InferRequestedOutput("OUTPUT1", binary_data=False),
    ]


def _check(result: Any, input0: Any = INPUT0, input1: Any = INPUT1) -> None:
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), input0 + input1)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), input0 - input1)


QUERY = {"test_1": 1, "test_2": 2}


def test_simple_http_infer_client(url: str) -> None:
    client = httpclient.InferenceServerClient(url=url)
    # With requested outputs (one binary, one JSON), inputs one JSON and one binary.
    result = client.infer(
        MODEL, _inputs(httpclient, False, True), outputs=_outputs(httpclient), query_params=QUERY
    )
    _check(result)
    statistics = client.get_inference_statistics(model_name=MODEL)
    assert len(statistics["model_stats"]) == 1
    # Without requested outputs.
    result = client.infer(MODEL, _inputs(httpclient, False, True), outputs=None, query_params=QUERY)
    _check(result)
    # An unknown model: Triton's clients check the start of the message.
    with pytest.raises(InferenceServerException) as caught:
        client.infer("wrong_model_name", _inputs(httpclient, False, True))
    assert caught.value.message().startswith("Request for unknown model")
    assert caught.value.message() == "Request for unknown model: 'wrong_model_name' is not found"
    client.close()


def test_simple_http_async_infer_client(url: str) -> None:
    client = httpclient.InferenceServerClient(url=url, concurrency=2)
    input1 = np.ones(shape=(1, 16), dtype=np.int32)
    inputs = [
        httpclient.InferInput("INPUT0", [1, 16], "INT32"),
        httpclient.InferInput("INPUT1", [1, 16], "INT32"),
    ]
    inputs[0].set_data_from_numpy(INPUT0, binary_data=True)
    inputs[1].set_data_from_numpy(input1, binary_data=True)
    outputs = [
        httpclient.InferRequestedOutput("OUTPUT0", binary_data=True),
        httpclient.InferRequestedOutput("OUTPUT1", binary_data=True),
    ]
    pending = [
        client.async_infer(model_name=MODEL, inputs=inputs, outputs=outputs) for _ in range(2)
    ]
    for request in pending:
        _check(request.get_result(), INPUT0, input1)
    client.close()


def test_simple_http_aio_infer_client(url: str) -> None:
    async def main() -> None:
        client = aioclient.InferenceServerClient(url=url)
        try:
            result = await client.infer(
                MODEL,
                _inputs(aioclient, False, True),
                outputs=_outputs(aioclient),
                query_params=QUERY,
            )
            _check(result)
            statistics = await client.get_inference_statistics(model_name=MODEL)
            assert len(statistics["model_stats"]) == 1
            result = await client.infer(MODEL, _inputs(aioclient, False, True), outputs=None)
            _check(result)
            with pytest.raises(InferenceServerException) as caught:
                await client.infer("wrong_model_name", _inputs(aioclient, False, True))
            assert caught.value.message().startswith("Request for unknown model")
            # In parallel.
            first, second = await asyncio.gather(
                client.infer(MODEL, _inputs(aioclient, False, True), outputs=_outputs(aioclient)),
                client.infer(MODEL, _inputs(aioclient, False, True), outputs=None),
            )
            _check(first)
            _check(second)
        finally:
            await client.close()

    asyncio.run(main())


def test_simple_http_health_metadata(url: str) -> None:
    client = httpclient.InferenceServerClient(url=url)
    assert client.is_server_live(query_params=QUERY)
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    metadata = client.get_server_metadata()
    # The one check of the example left out: it wants the server to call itself "triton".
    assert metadata["name"] == "mlops"
    assert {"statistics", "model_configuration"} <= set(metadata["extensions"])
    assert client.get_model_metadata(MODEL, query_params=QUERY)["name"] == MODEL
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_metadata("wrong_model_name")
    assert "Request for unknown model" in caught.value.message()
    assert not client.is_model_ready("wrong_model_name")
    client.close()


def test_statistics_count_requests_rows_runs_and_failures(url: str) -> None:
    client = httpclient.InferenceServerClient(url=url)

    def stat() -> dict[str, Any]:
        doc = client.get_inference_statistics(model_name=MODEL, model_version="1")
        assert len(doc["model_stats"]) == 1
        return dict(doc["model_stats"][0])

    before = stat()
    rows = 3
    inputs = [
        httpclient.InferInput("INPUT0", [rows, 16], "INT32"),
        httpclient.InferInput("INPUT1", [rows, 16], "INT32"),
    ]
    for i in inputs:
        i.set_data_from_numpy(np.ones((rows, 16), dtype=np.int32))
    client.infer(MODEL, inputs)
    client.infer(MODEL, _inputs(httpclient, True, True))
    bad = [httpclient.InferInput("INPUT0", [1, 16], "INT32")]  # INPUT1 missing: a failure
    bad[0].set_data_from_numpy(INPUT0)
    with pytest.raises(InferenceServerException):
        client.infer(MODEL, bad)
    after = stat()
    assert (after["name"], after["version"]) == (MODEL, "1")
    assert after["inference_count"] - before["inference_count"] == rows + 1
    assert after["execution_count"] - before["execution_count"] == 2
    assert 0 < time.time() * 1000 - after["last_inference"] < 60_000
    stats, old = after["inference_stats"], before["inference_stats"]
    assert set(stats) >= {
        "success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
    }  # fmt: skip
    assert stats["success"]["count"] - old["success"]["count"] == 2
    assert stats["fail"]["count"] - old["fail"]["count"] == 1
    for key in ("success", "fail", "compute_input", "compute_infer", "compute_output"):
        assert stats[key]["ns"] > old[key]["ns"], key
    for key in ("queue", "compute_infer", "compute_output"):
        assert stats[key]["count"] - old[key]["count"] == 2, key
    # Every model, and the model without a version, list the one loaded version.
    for doc in (client.get_inference_statistics(), client.get_inference_statistics(MODEL)):
        assert [(s["name"], s["version"]) for s in doc["model_stats"]] == [(MODEL, "1")]
    with pytest.raises(InferenceServerException) as caught:
        client.get_inference_statistics(model_name="wrong_model_name")
    assert caught.value.message() == "Request for unknown model: 'wrong_model_name' is not found"
    with pytest.raises(InferenceServerException) as caught:
        client.get_inference_statistics(model_name=MODEL, model_version="7")
    assert caught.value.message() == "Request for unknown model: 'simple' version 7 is not found"
    client.close()


def test_model_configuration(url: str) -> None:
    client = httpclient.InferenceServerClient(url=url)
    for config in (client.get_model_config(MODEL), client.get_model_config(MODEL, "1")):
        assert config["name"] == MODEL
        assert config["max_batch_size"] == MAX_BATCH
        assert config["platform"] == "onnxruntime_onnx"
        tensors = [(t["name"], t["data_type"], t["dims"]) for t in config["input"]]
        assert tensors == [("INPUT0", "TYPE_INT32", [16]), ("INPUT1", "TYPE_INT32", [16])]
        tensors = [(t["name"], t["data_type"], t["dims"]) for t in config["output"]]
        assert tensors == [("OUTPUT0", "TYPE_INT32", [16]), ("OUTPUT1", "TYPE_INT32", [16])]
        assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 1000
    with pytest.raises(InferenceServerException) as caught:
        client.get_model_config("wrong_model_name")
    assert caught.value.message().startswith("Request for unknown model")
    client.close()


def test_extensions_are_read_only_and_bounded(url: str) -> None:
    base = f"http://{url}/v2/models"
    assert httpx.post(f"{base}/{MODEL}/stats").status_code == 405
    assert httpx.delete(f"{base}/{MODEL}/config").status_code == 405
    long = "x" * 5000
    response = httpx.get(f"{base}/{long}/stats")
    assert response.status_code == 404
    assert len(response.json()["error"]) < 300  # the name is cut, not echoed whole
    assert httpx.get(f"{base}/{MODEL}/versions/1/2/stats").status_code == 404
