"""An MLflow server's model registry read over its REST API (the endpoints MLflow's own client
calls: `model-versions/search`, `registered-models/search`, `registered-models/alias`), with
httpx instead of importing mlflow. Paged like the client; the same credentials from the same
`MLFLOW_TRACKING_*` variables (token, user and password, TLS settings).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from mlops import errors
from mlops.providers.mlflow import session as mlflow_session
from mlops.providers.mlflow.reader import Snapshot, Unsupported, VersionRow

API = "/api/2.0/mlflow/"
MAX_PAGES = 100_000  # a server that never stops paging must not loop us forever
_BUSY = (429, 502, 503, 504)  # answers a retry may fix


class RestReader:
    def __init__(self, uri: str, *, timeout: float) -> None:
        self.uri = uri
        self.timeout = timeout

    def read(self, names: Sequence[str] | None) -> Snapshot:
        filters = mlflow_session.name_filters(None if names is None else list(names))
        with self._client() as client:
            versions = [
                _row(item)
                for filter_string in filters
                for item in self._pages(
                    client,
                    "search versions",
                    "model-versions/search",
                    "model_versions",
                    # read at call time: tests shrink the page to exercise paging
                    mlflow_session.VERSIONS_PAGE,
                    filter_string,
                    order_by=["name ASC", "version_number ASC"],
                )
            ]
            aliases: dict[str, dict[str, str]] = {}
            if versions:  # aliases only matter for models that have versions
                with_versions = sorted({row.name for row in versions})
                for filter_string in mlflow_session.name_filters(
                    None if names is None else with_versions
                ):
                    for model in self._pages(
                        client,
                        "search models",
                        "registered-models/search",
                        "registered_models",
                        mlflow_session.MODELS_PAGE,
                        filter_string,
                    ):
                        aliases[str(model["name"])] = {
                            str(a["alias"]): str(a["version"]) for a in model.get("aliases", [])
                        }
        return Snapshot(versions, aliases)

    def by_alias(self, name: str, alias: str) -> VersionRow | None:
        with self._client() as client:
            found = self._get(
                client, "get by alias", "registered-models/alias", {"name": name, "alias": alias}
            )
        return None if found is None else _row(found["model_version"])

    # -- HTTP ------------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        user = os.environ.get("MLFLOW_TRACKING_USERNAME")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        auth = httpx.BasicAuth(user, password) if user and password else None
        verify: bool | str = True
        if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
            verify = False
        elif os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
            verify = os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
        cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None
        return httpx.Client(
            base_url=self.uri.rstrip("/") + API,
            headers=headers,
            auth=auth,
            verify=verify,
            cert=cert,
            timeout=self.timeout,
        )

    def _pages(
        self,
        client: httpx.Client,
        what: str,
        path: str,
        key: str,
        size: int,
        filter_string: str | None,
        **extra: Any,
    ) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {"max_results": size, **extra}
        if filter_string is not None:
            params["filter"] = filter_string
        for _ in range(MAX_PAGES):
            page = self._get(client, what, path, params)
            if page is None:
                return
            yield from page.get(key, [])
            token = page.get("next_page_token")
            if not token:
                return
            params["page_token"] = token
        raise errors.RegistryError(f"registry {self.uri}: {what} never stopped paging")

    def _get(
        self, client: httpx.Client, what: str, path: str, params: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The JSON answer; None when the server says the model or alias does not exist."""
        try:
            response = client.get(path, params=params)
        except httpx.TimeoutException:
            raise errors.TransientError(
                f"registry {self.uri} is unreachable ({what}: timed out)"
            ) from None
        except httpx.TransportError as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else str(exc)[:200]
            raise errors.TransientError(
                f"registry {self.uri} is unreachable ({what}: {reason})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 200 and isinstance(body, dict):
            return body
        if not isinstance(body, dict) or "error_code" not in body:
            if response.status_code in (404, 405):
                # Not an MLflow REST API at this path (a proxy, another product)
                raise Unsupported(f"{path}: HTTP {response.status_code}")
            body = {}
        code, message = body.get("error_code"), str(body.get("message", ""))
        if mlflow_session.is_missing_code(code, message):
            return None
        detail = message.splitlines()[0][:300] if message else f"HTTP {response.status_code}"
        if response.status_code in _BUSY:
            raise errors.TransientError(f"registry {self.uri} is busy ({what}: {detail})")
        raise errors.RegistryError(f"registry {self.uri}: {what} failed: {detail}")


def _row(item: dict[str, Any]) -> VersionRow:
    try:
        created = item.get("creation_timestamp")
        return VersionRow(
            name=str(item["name"]),
            version=str(item["version"]),
            source=str(item.get("source", "")),
            creation_timestamp=int(created) if created is not None else None,
            tags={str(t["key"]): str(t.get("value", "")) for t in item.get("tags", [])},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise errors.RegistryError(f"registry answered a malformed model version: {exc}") from None
