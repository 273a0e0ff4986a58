"""Remote shadow: mirror routed requests to a shadow version served elsewhere (another
Kubernetes Service) and compare its answers with the primary's, as `shadow.py` does in-process.

On a cluster each version runs in its own pods, so the gateway's RequestMirror can send copies
but nothing sees both answers. Here the primary engine does the mirroring itself: after its
own response is sent, it posts the same inputs to the shadow's version-pinned endpoint
(`URL/v2/models/NAME/versions/V/infer`), decodes the answer and counts it under the shadow
version's `route="shadow"` requests and durations and `mlops_shadow_agreement` in its own
/metrics, the series the shadow gates read. The primary response never waits for it, and a
slow or failing shadow only costs counted, dropped copies (at most `MAX_IN_FLIGHT` at once).

Configuration is a JSON file named by `MLOPS_SHADOW_FILE` (a ConfigMap volume on the cluster,
which the kubelet updates in place), re-read when it changes, at most once a second:
`{"shadows": {"MODEL": {"version": "1.1.0", "url": "http://svc:8000", "percent": 100}}}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from time import monotonic, perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np

from mlops.serving import shadow

if TYPE_CHECKING:
    import httpx

    from mlops.serving.batcher import Feeds, Outputs
    from mlops.serving.stats import StatsBook
    from mlops.serving.version import ModelVersion

log = logging.getLogger("mlops.serving")

ENV = "MLOPS_SHADOW_FILE"
MAX_FILE_BYTES = 64 << 10
MAX_IN_FLIGHT = 64
MAX_RESPONSE_BYTES = 64 << 20
TIMEOUT_S = 10.0
RELOAD_EVERY_S = 1.0
_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$")
_VERSION = re.compile(r"^[0-9A-Za-z.+-]{1,128}$")


@dataclass(frozen=True)
class Target:
    version: str
    url: str
    percent: float


def parse(text: str) -> dict[str, Target]:
    """The file's shadows by model; ValueError (one line) for anything malformed."""
    if len(text) > MAX_FILE_BYTES:
        raise ValueError(f"shadow file is over {MAX_FILE_BYTES} bytes")
    doc = json.loads(text)
    shadows = doc.get("shadows") if isinstance(doc, dict) else None
    if not isinstance(shadows, dict):
        raise ValueError('shadow file needs {"shadows": {MODEL: {version, url, percent}}}')
    out: dict[str, Target] = {}
    for model, entry in shadows.items():
        if not isinstance(entry, dict) or set(entry) - {"version", "url", "percent"}:
            raise ValueError(f"shadow of {model!r}: only version, url and percent")
        version, url, percent = entry.get("version"), entry.get("url"), entry.get("percent", 100)
        if not isinstance(version, str) or not _VERSION.match(version):
            raise ValueError(f"shadow of {model!r}: version {version!r} is not a version")
        if not isinstance(url, str) or not _URL.match(url):
            raise ValueError(f"shadow of {model!r}: url must be http(s)://HOST[:PORT]")
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise ValueError(f"shadow of {model!r}: percent must be a number")
        if not 0 <= percent <= 100:
            raise ValueError(f"shadow of {model!r}: percent must be within 0..100")
        out[str(model)] = Target(version, url.rstrip("/"), float(percent))
    return out


class RemoteShadows:
    """The shadows of this engine's models, from the file, and the copies in flight."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.targets: dict[str, Target] = {}
        self._stamp: tuple[float, int] | None = None
        self._checked = -RELOAD_EVERY_S
        self._client: httpx.AsyncClient | None = None
        self.in_flight = 0

    def target(self, model: str) -> Target | None:
        now = monotonic()
        if now - self._checked >= RELOAD_EVERY_S:
            self._checked = now
            self._reload()
        return self.targets.get(model)

    def _reload(self) -> None:
        try:
            info = self.path.stat()
        except OSError:
            self.targets, self._stamp = {}, None  # no file: no remote shadow
            return
        stamp = (info.st_mtime, info.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.targets = parse(self.path.read_text())
        except (OSError, ValueError) as exc:  # keep serving; say why the shadow stopped
            log.warning("remote shadow off: %s: %s", self.path, exc)
            self.targets = {}

    def offer(
        self,
        book: StatsBook,
        mv: ModelVersion,
        feeds: Feeds,
        primary: Outputs,
        overhead: float,
    ) -> None:
        """Mirror one routed request of `mv` if its model has a remote shadow (sampled by
        percent); returns at once, the comparison runs as a task on the running loop."""
        target = self.target(mv.name)
        if target is None or target.version == mv.version:
            return
        if target.percent < 100 and random.random() * 100 >= target.percent:
            return
        stats = book.get(mv.name, target.version)
        if self.in_flight >= MAX_IN_FLIGHT:
            stats.mirrored.requests["503"] += 1  # dropped: the shadow is not keeping up
            return
        self.in_flight += 1
        task = asyncio.get_running_loop().create_task(
            self._mirror(book, mv, target, feeds, primary, overhead)
        )
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight -= 1
        if not task.cancelled() and task.exception() is not None:
            log.warning("remote shadow: %s", task.exception())

    async def _mirror(
        self,
        book: StatsBook,
        mv: ModelVersion,
        target: Target,
        feeds: Feeds,
        primary: Outputs,
        overhead: float,
    ) -> None:
        import httpx

        stats = book.get(mv.name, target.version)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=TIMEOUT_S)
        body = {
            "inputs": [
                {
                    "name": spec.name,
                    "datatype": spec.datatype,
                    "shape": list(feeds[spec.name].shape),
                    "data": feeds[spec.name].ravel().tolist(),
                }
                for spec in mv.settings.inputs
            ]
        }
        url = f"{target.url}/v2/models/{mv.name}/versions/{target.version}/infer"
        start = perf_counter()
        try:
            response = await self._client.post(url, json=body)
        except httpx.HTTPError:
            stats.mirrored.requests["502"] += 1  # unreachable shadow
            return
        seconds = overhead + perf_counter() - start
        if response.status_code != 200 or len(response.content) > MAX_RESPONSE_BYTES:
            stats.mirrored.requests[str(response.status_code)] += 1
            return
        try:
            outputs = _outputs(response.json(), list(mv.session.output_names))
        except (ValueError, KeyError, TypeError):
            stats.mirrored.requests["502"] += 1  # an answer that is not a V2 response
            return
        stats.mirrored.requests["200"] += 1
        stats.mirrored.duration.observe(seconds)
        same = shadow.agree(primary, outputs, mv.settings.classification)
        stats.agreement["true" if same else "false"] += 1


def _outputs(doc: Any, names: list[str]) -> list[np.ndarray[Any, Any]]:
    by_name = {item["name"]: item for item in doc["outputs"]}
    out = []
    for name in names:
        item = by_name[name]
        out.append(np.asarray(item["data"]).reshape([int(d) for d in item["shape"]]))
    return out


_SHADOWS: RemoteShadows | None = None
_CONFIGURED = False


def shadows() -> RemoteShadows | None:
    """This process's remote shadows, when `MLOPS_SHADOW_FILE` names a file (else None)."""
    global _SHADOWS, _CONFIGURED
    if not _CONFIGURED:
        _CONFIGURED = True
        path = os.environ.get(ENV)
        _SHADOWS = RemoteShadows(Path(path)) if path else None
    return _SHADOWS
