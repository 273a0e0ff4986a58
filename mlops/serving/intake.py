"""Request bodies: a memory budget for large ones, and their decoding off the event loop.

Decoding a JSON body costs about 20 ms of CPU per MiB (orjson builds a Python object per
number, numpy then converts them), and both hold the GIL: a 60 MiB body decoded on the event
loop, or in one of its threads, stalls every other client for over a second. So:

- Bodies whose JSON part is at most INLINE_MAX_BYTES (256 KiB, a few ms of decoding) are
  decoded inline, as before: the common small request pays nothing extra.
- Larger JSON parts go to one decoder process per worker (`python -m mlops.serving.intake`,
  started at the first large body, at nice +10 so the event loop wins a shared core). It runs
  the same `codec.decode` and sends the arrays back as raw bytes, one body at a time; the
  event loop meanwhile serves everyone else. Binary-extension tensors cost nothing to decode
  and stay inline however large the body is.
- Every body over INLINE_MAX_BYTES counts against the worker's budget of in-flight body
  bytes (BUDGET_FACTOR x the body limit), reserved from Content-Length before the body is
  read, and released when the request is answered: a body that would exceed it is refused at
  once with 503 and never read, so concurrent huge bodies cannot exhaust memory.
- Large bodies are received into one buffer of their declared size and the decoded arrays
  come back in pieces, so the event loop never joins or copies tens of MiB in one go.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import logging
import os
import signal
import struct
import sys
from typing import IO, Any

import numpy as np
import orjson

from mlops.serving import codec, dtypes
from mlops.serving.codec import InferRequest
from mlops.serving.errors import BadRequest, Overloaded, PayloadTooLarge, ServingError
from mlops.serving.http import Receive, Scope, read_body

log = logging.getLogger("mlops.serving")

INLINE_MAX_BYTES = 256 << 10  # JSON parts up to this size are decoded on the event loop
BUDGET_FACTOR = 2  # in-flight large-body bytes per worker, in units of the body size limit
DECODER_NICE_INCREMENT = 10
_PIPE_BYTES = 1 << 20  # pipe buffers to and from the decoder
_STREAM_LIMIT = 1 << 20  # also the largest piece of a reply the loop copies at once
_REQUEST = struct.Struct("<qQ")  # header length (-1: none), body length
_REPLY = struct.Struct("<QQ")  # metadata length, array bytes length


class Intake:
    """One per engine worker. All methods run on its event loop."""

    def __init__(
        self,
        max_body_bytes: int,
        budget_bytes: int | None = None,
        inline_max_bytes: int = INLINE_MAX_BYTES,
    ) -> None:
        self.inline_max_bytes = inline_max_bytes
        self.max_body_bytes = max_body_bytes
        self.budget_bytes = max(
            budget_bytes or BUDGET_FACTOR * max_body_bytes, max_body_bytes
        )  # a lone body of the maximum size always fits
        self.held_bytes = 0  # large-body bytes of requests being served
        self.pending = 0  # bodies handed to the decoder process and not yet decoded
        self._jobs: asyncio.Queue[_Job] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._child: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        """The decoder process, once started."""
        return None if self._child is None else self._child.pid

    # -- the memory budget ------------------------------------------------------------------

    def admit(self, declared: bytes | None) -> int:
        """Reserve a large body's bytes from its Content-Length before it is read; returns
        what to `release` when the request is answered. Raises Overloaded (503) at once."""
        if declared is None:
            return 0
        try:
            size = int(declared)
        except ValueError:
            return 0  # read_body answers 400
        return self._reserve(size)

    def admit_read(self, size: int, held: int) -> int:
        """The same for a body that declared no length, once read (before decoding it)."""
        return held or self._reserve(size)

    def release(self, held: int) -> None:
        self.held_bytes -= held

    def _reserve(self, size: int) -> int:
        if size <= self.inline_max_bytes or size > self.max_body_bytes:
            return 0  # small, or answered 413 when read
        if self.held_bytes + size > self.budget_bytes:
            raise Overloaded(
                f"large request bodies in flight would exceed this worker's "
                f"{self.budget_bytes}-byte budget; retry later"
            )
        self.held_bytes += size
        return size

    # -- reading ----------------------------------------------------------------------------

    async def read(self, scope: Scope, receive: Receive, held: int) -> bytes | memoryview:
        """The request body. A large one (`held` bytes admitted from its Content-Length) is
        received straight into one buffer of that size, never joined from pieces."""
        if not held:
            return await read_body(scope, receive, self.max_body_bytes)
        # Not a bytearray: that would zero (touch) every page up front, tens of ms on the loop;
        # numpy leaves fresh pages to the kernel, touched only as the data arrives.
        view, filled, more = np.empty(held, dtype=np.uint8).data, 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("client disconnected")
            chunk = message.get("body", b"")
            if filled + len(chunk) > held:
                raise PayloadTooLarge("body longer than its Content-Length")
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            more = message.get("more_body", False)
        if filled != held:
            raise BadRequest("body shorter than its Content-Length")
        return view

    # -- decoding ---------------------------------------------------------------------------

    async def decode(self, body: bytes | memoryview, header_length: int | None) -> InferRequest:
        json_bytes = len(body) if header_length is None else header_length
        if json_bytes <= self.inline_max_bytes or json_bytes > len(body):
            return codec.decode(body, header_length)  # small, or malformed: answered inline
        if self._jobs is None:
            self._jobs = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve_jobs())
        job = _Job(body, header_length, asyncio.get_running_loop().create_future())
        self.pending += 1
        self._jobs.put_nowait(job)
        return await job.future

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while self._jobs is not None and not self._jobs.empty():
            job = self._jobs.get_nowait()
            if not job.future.done():
                job.future.set_exception(Overloaded("the engine is shutting down"))
        await self._stop_child()

    async def _serve_jobs(self) -> None:
        assert self._jobs is not None
        while True:
            job = await self._jobs.get()
            try:
                if job.future.done():
                    continue  # the client went away before its turn
                try:
                    result: InferRequest | ServingError = await self._exchange(job)
                except Exception as exc:  # a dead or broken decoder: never a stuck queue
                    log.warning(
                        "body decoder process failed (%s: %s); restarting it",
                        type(exc).__name__,
                        exc,
                    )
                    await self._stop_child()
                    result = Overloaded("the body decoder failed; retry the request")
                if not job.future.done():
                    if isinstance(result, ServingError):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)
            finally:
                self.pending -= 1

    async def _exchange(self, job: _Job) -> InferRequest | ServingError:
        child = await self._running_child()
        assert child.stdin is not None and child.stdout is not None
        header = -1 if job.header_length is None else job.header_length
        child.stdin.write(_REQUEST.pack(header, len(job.body)))
        child.stdin.write(job.body)
        await child.stdin.drain()
        meta_len, data_len = _REPLY.unpack(await child.stdout.readexactly(_REPLY.size))
        meta = orjson.loads(await child.stdout.readexactly(meta_len))
        data = bytearray(data_len)
        view, filled = memoryview(data), 0
        while filled < data_len:  # in pieces: no single copy of the whole reply on the loop
            piece = await child.stdout.read(min(data_len - filled, _STREAM_LIMIT))
            if not piece:
                raise EOFError("the decoder process ended mid-reply")
            view[filled : filled + len(piece)] = piece
            filled += len(piece)
        return _from_reply(meta, data)

    async def _running_child(self) -> asyncio.subprocess.Process:
        if self._child is not None and self._child.returncode is None:
            return self._child
        self._child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mlops.serving.intake",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
            limit=_STREAM_LIMIT,
        )
        return self._child

    async def _stop_child(self) -> None:
        child, self._child = self._child, None
        if child is None or child.returncode is not None:
            return
        if child.stdin is not None:
            child.stdin.close()  # the decoder exits at end of input
        try:
            await asyncio.wait_for(child.wait(), 2)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()


class _Job:
    __slots__ = ("body", "future", "header_length")

    def __init__(
        self,
        body: bytes | memoryview,
        header_length: int | None,
        future: asyncio.Future[InferRequest],
    ) -> None:
        self.body = body
        self.header_length = header_length
        self.future = future


def _from_reply(meta: dict[str, Any], data: bytearray) -> InferRequest | ServingError:
    error = meta.get("error")
    if error is not None:
        return BadRequest(str(error))
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for name, datatype, shape in meta["inputs"]:
        dtype = dtypes.V2_TO_NUMPY[datatype]
        count = 1
        for d in shape:
            count *= d
        inputs[name] = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
        datatypes[name] = datatype
        offset += count * dtype.itemsize
    return InferRequest(
        meta["id"],
        inputs,
        datatypes,
        meta["outputs"],
        frozenset(meta["binary_outputs"]),
        meta["binary_all"],
        frozenset(meta["finite"]),
    )


# -- the decoder process ----------------------------------------------------------------------


def _reply(body: bytes, header_length: int | None) -> list[bytes | memoryview]:
    try:
        request = codec.decode(body, header_length)
    except BadRequest as exc:
        meta = orjson.dumps({"error": exc.message})
        return [_REPLY.pack(len(meta), 0), meta]
    # reshape: ascontiguousarray turns a 0-d (scalar) tensor into shape [1] (found by fuzzing)
    arrays = [np.ascontiguousarray(a).reshape(a.shape) for a in request.inputs.values()]
    meta = orjson.dumps(
        {
            "id": request.id,
            "inputs": [
                [name, request.datatypes[name], list(a.shape)]
                for name, a in zip(request.inputs, arrays, strict=True)
            ],
            "outputs": request.outputs,
            "binary_outputs": sorted(request.binary_outputs),
            "binary_all": request.binary_all,
            "finite": sorted(request.finite),
        }
    )
    blobs = [a.data.cast("B") for a in arrays if a.size]
    return [_REPLY.pack(len(meta), sum(len(b) for b in blobs)), meta, *blobs]


def _read(stream: IO[bytes], size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Decode bodies from `stdin` until it ends, one reply each on `stdout`."""
    while True:
        head = _read(stdin, _REQUEST.size)
        if head is None:
            return
        header_length, size = _REQUEST.unpack(head)
        body = _read(stdin, size)
        if body is None:
            return
        for part in _reply(body, None if header_length < 0 else header_length):
            stdout.write(part)
        stdout.flush()
        del body


def _main() -> None:
    # Linux: die with the worker even if it is killed outright (stdin would end anyway).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    with contextlib.suppress(OSError):
        os.nice(DECODER_NICE_INCREMENT)
    for fd in (0, 1):  # larger pipes: fewer, larger writes (an optimisation only)
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is for the worker
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but replies may reach the pipe
    serve(stdin, stdout)


if __name__ == "__main__":
    _main()
