"""Clients of one mlops engine worker: its admin API (httpx) and its V2 inference API
(tritonclient). See docs/engine.md for the contract.

Transport failures become `EngineUnavailable` (retry may help); refusals by the engine become
`EngineRejected` with the engine's one-line reason (retrying the same request will not help).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from mlops import errors

if TYPE_CHECKING:  # annotations only: status and plan need no numpy import (~0.1 s)
    import numpy as np

# Load includes warm-up of the model; a large model can take a while on a small machine.
LOAD_TIMEOUT_S = 300.0
ADMIN_TIMEOUT_S = 10.0


class EngineUnavailable(errors.TransientError):
    """The worker did not answer (not running, restarting, or too busy)."""


class EngineRejected(errors.PermanentError):
    """The worker answered with an error status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class AdminClient:
    """The admin address of one worker: repository, routing, health and metrics."""

    def __init__(
        self, url: str, timeout: float = ADMIN_TIMEOUT_S, token: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        # Load, unload and routing need the engine's admin token when it has one.
        headers = {"authorization": f"Bearer {token}"} if token else None
        self._http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def live(self) -> bool:
        try:
            return self._http.get("/v2/health/live", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def ready(self) -> bool:
        try:
            return self._http.get("/v2/health/ready", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def index(self) -> list[dict[str, str]]:
        rows = self._call("POST", "/v2/repository/index", json={})
        if not isinstance(rows, list):
            raise EngineRejected(f"{self.url}: repository index is not a list", 502)
        return rows

    def load(
        self,
        name: str,
        version: str,
        settings: Mapping[str, Any] | None,
        sha256: str | None = None,
    ) -> None:
        """Load and warm one version; with `sha256`, the engine refuses (409) a model file
        with another digest."""
        params: dict[str, Any] = {"version": version}
        if settings is not None:
            params["settings"] = dict(settings)
        if sha256 is not None:
            params["sha256"] = sha256
        self._call(
            "POST",
            f"/v2/repository/models/{name}/load",
            json={"parameters": params},
            timeout=LOAD_TIMEOUT_S,
        )

    def unload(self, name: str, version: str | None) -> None:
        params = {"version": version} if version is not None else {}
        self._call(
            "POST",
            f"/v2/repository/models/{name}/unload",
            json={"parameters": params},
            timeout=LOAD_TIMEOUT_S,
        )

    def routing(self) -> dict[str, Any]:
        table = self._call("GET", "/v2/routing")
        if not isinstance(table, dict) or not isinstance(table.get("models"), dict):
            raise EngineRejected(f"{self.url}: routing table has no 'models'", 502)
        return table

    def set_routing(
        self,
        name: str,
        weights: Mapping[str, int],
        shadow: Mapping[str, Any] | None,
        generation: int,
    ) -> int:
        body = {"weights": dict(weights), "shadow": shadow, "generation": generation}
        answer = self._call("PUT", f"/v2/routing/{name}", json=body)
        return int(answer["generation"])

    def samples(self, name: str, version: str) -> dict[str, Any]:
        """The worker's reservoir of live inputs of one version (docs/monitoring.md)."""
        doc = self._call("GET", f"/v2/samples/{name}/{version}")
        if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), dict):
            raise EngineRejected(f"{self.url}: samples of {name}@{version} have no inputs", 502)
        return doc

    def set_baseline(self, name: str, version: str, features: list[dict[str, Any]]) -> None:
        """Give a loaded version its training statistics (the engine's drift gauges)."""
        self._call("PUT", f"/v2/samples/{name}/{version}", json={"features": features})

    def metrics_text(self) -> str:
        try:
            response = self._http.get("/metrics")
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"{self.url}/metrics: {_reason(exc)}") from None
        if response.status_code != 200:
            raise EngineRejected(f"{self.url}/metrics: HTTP {response.status_code}", 502)
        return response.text

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"{self.url}{path}: {_reason(exc)}") from None
        if response.status_code >= 400:
            raise EngineRejected(
                f"{self.url}{path}: HTTP {response.status_code}: {_error_text(response)}",
                response.status_code,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise EngineRejected(f"{self.url}{path}: answer is not JSON", 502) from None


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return " ".join(response.text.split())[:200] or response.reason_phrase
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return str(body)[:200]


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


class InferClient:
    """The V2 inference API through tritonclient.http (binary tensors), pinned to a version."""

    def __init__(self, url: str, concurrency: int = 1, timeout: float = 60.0) -> None:
        import tritonclient.http as triton

        self._triton = triton
        host = url.removeprefix("http://").rstrip("/")
        self._client = triton.InferenceServerClient(
            host, concurrency=concurrency, connection_timeout=timeout, network_timeout=timeout
        )

    def close(self) -> None:
        self._client.close()

    def max_batch_size(self, name: str, version: str) -> int:
        """The version's batch limit from its metadata (0: none)."""
        metadata = self._client.get_model_metadata(name, model_version=version)
        value = metadata.get("max_batch_size", 0) if isinstance(metadata, dict) else 0
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def infer(
        self,
        name: str,
        version: str,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        datatypes: Mapping[str, str],
        outputs: Sequence[str],
    ) -> dict[str, np.ndarray[Any, Any]]:
        """One version-pinned request; raises EngineRejected/EngineUnavailable on failure."""
        triton = self._triton
        tensors = []
        for tensor_name, array in inputs.items():
            tensor = triton.InferInput(tensor_name, list(array.shape), datatypes[tensor_name])
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        requested = [triton.InferRequestedOutput(o, binary_data=True) for o in outputs]
        try:
            result = self._client.infer(name, tensors, model_version=version, outputs=requested)
        except triton.InferenceServerException as exc:
            status = str(exc.status() or "")
            message = " ".join(str(exc.message()).split())
            if status.isdigit():
                raise EngineRejected(f"{name}@{version}: {message}", int(status)) from None
            raise EngineUnavailable(f"{name}@{version}: {message}") from None
        except OSError as exc:
            raise EngineUnavailable(f"{name}@{version}: {exc}") from None
        return {o: result.as_numpy(o) for o in outputs}


class VersionClient:
    """One model version's inference as a plain function of arrays: what callers outside
    providers/ (conformance) use, so that they never touch tritonclient."""

    def __init__(
        self,
        url: str,
        name: str,
        version: str,
        datatypes: Mapping[str, str],
        outputs: Sequence[str],
    ) -> None:
        self._client = InferClient(url)
        self._args = (name, version)
        self._datatypes = dict(datatypes)
        self._outputs = list(outputs)

    def __call__(
        self, inputs: Mapping[str, np.ndarray[Any, Any]]
    ) -> dict[str, np.ndarray[Any, Any]]:
        return self._client.infer(*self._args, inputs, self._datatypes, self._outputs)

    def max_batch_size(self) -> int:
        return self._client.max_batch_size(*self._args)

    def close(self) -> None:
        self._client.close()
