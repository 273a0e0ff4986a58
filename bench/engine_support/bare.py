"""The bare handler: onnxruntime answering V2 JSON infer behind one of three HTTP front ends.

No routing, no metrics, no batching, no validation beyond what decoding needs: the ceiling of
a Python HTTP front end on this machine, for each way of running one:

- `uvicorn`: a raw ASGI callable on uvicorn (httptools, uvloop);
- `mlops`: the same ASGI callable and uvicorn server, with the engine's own connection
  protocol (mlops/serving/protocol.py, its limits included) in place of uvicorn's;
- `raw`: httptools driven directly by an asyncio protocol on uvloop, no ASGI and no limits;
- `granian`: granian's RSGI interface (Rust HTTP server; bare_rsgi.py).

Run with the project's virtualenv:

    python bench/engine_support/bare.py --model model.onnx --name tiny --port 9001
    python bench/engine_support/bare.py --server raw --model model.onnx --name tiny --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httptools
import numpy as np
import onnxruntime as ort
import orjson
import uvicorn

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

V2_TO_NUMPY: dict[str, type[np.generic]] = {
    "FP32": np.float32,
    "FP64": np.float64,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}
NUMPY_TO_V2 = {np.dtype(numpy_type): name for name, numpy_type in V2_TO_NUMPY.items()}
JSON_HEADERS = [(b"content-type", b"application/json")]


class BareApp:
    """A raw ASGI callable; every request that is not infer or health gets 404."""

    def __init__(self, model_path: str, name: str) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        self.output_names = [output.name for output in self.session.get_outputs()]
        self.name = name
        self.infer_path = f"/v2/models/{name}/infer"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] == "POST" and path == self.infer_path:
            body = await _read_body(receive)
            try:
                payload = self.infer(body)
            except (KeyError, TypeError, ValueError) as error:
                await _respond(send, 400, orjson.dumps({"error": str(error)}))
                return
            await _respond(send, 200, payload)
        elif path in ("/v2/health/ready", "/v2/health/live"):
            await _respond(send, 200, b"{}")
        else:
            await _respond(send, 404, b'{"error": "not found"}')

    def infer(self, body: bytes) -> bytes:
        request = orjson.loads(body)
        feeds = {
            item["name"]: np.asarray(item["data"], dtype=V2_TO_NUMPY[item["datatype"]]).reshape(
                item["shape"]
            )
            for item in request["inputs"]
        }
        results = self.session.run(self.output_names, feeds)
        outputs = [
            {
                "name": name,
                "datatype": NUMPY_TO_V2[array.dtype],
                "shape": list(array.shape),
                "data": array.ravel(),
            }
            for name, array in zip(self.output_names, results, strict=True)
        ]
        return orjson.dumps(
            {"model_name": self.name, "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY
        )


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


class RawProtocol(asyncio.Protocol):
    """HTTP/1.1 keep-alive on httptools, answering each request as soon as it is parsed."""

    def __init__(self, app: BareApp) -> None:
        self.app = app
        self.infer_path = app.infer_path.encode()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        status, payload = b"200 OK", b"{}"
        if self.url == self.infer_path:
            try:
                payload = self.app.infer(b"".join(self.body))
            except (KeyError, TypeError, ValueError) as error:
                status, payload = b"400 Bad Request", orjson.dumps({"error": str(error)})
        elif not self.url.startswith(b"/v2/health/"):
            status, payload = b"404 Not Found", b'{"error": "not found"}'
        assert self.transport is not None
        self.transport.write(
            b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (status, len(payload), payload)
        )


async def _serve_raw(app: BareApp, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: RawProtocol(app), host, port, backlog=2048)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--server", choices=["uvicorn", "mlops", "raw", "granian"], default="uvicorn"
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.server == "raw":
        import uvloop

        uvloop.run(_serve_raw(BareApp(args.model, args.name), args.host, args.port))
        return
    if args.server == "granian":
        from granian.constants import Interfaces
        from granian.server import Server as Granian

        os.environ["BARE_MODEL"], os.environ["BARE_NAME"] = args.model, args.name
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        # One worker, one runtime thread: the same single core as the other servers.
        Granian(
            "bare_rsgi:app",
            address=args.host,
            port=args.port,
            interface=Interfaces.RSGI,
            workers=1,
            runtime_threads=1,
            log_enabled=False,
        ).serve()
        return
    http: Any = "httptools"
    if args.server == "mlops":
        # The engine's own front door (mlops/serving/protocol.py) under the same handler.
        from mlops.serving import protocol
        from mlops.serving.config import ServeConfig

        http = protocol.configure(ServeConfig(host=args.host, port=args.port))
    uvicorn.run(
        BareApp(args.model, args.name),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http=http,
        lifespan="off",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
