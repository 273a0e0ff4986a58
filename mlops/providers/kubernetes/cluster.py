"""The one place that talks to a Kubernetes API server: server-side apply, list, get, delete.

Built on the official client's `DynamicClient`, so core kinds and the Gateway API CRDs go
through the same calls. The connection is made on first use (kubeconfig context, or the
in-cluster service account), never at import or construction.
"""

from __future__ import annotations

import os
from typing import Any, Protocol

from mlops import errors

Obj = dict[str, Any]
FIELD_MANAGER = "mlops"


class FieldConflict(errors.PermanentError):
    """Server-side apply refused: another field manager owns fields mlops sends (an HPA or
    KEDA owning `spec.replicas`, a person's `kubectl edit`). mlops never forces: the owner
    must let go, or the spec must stop setting the field. `owners`: (field, manager)."""

    def __init__(self, message: str, owners: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.owners = owners


class Cluster(Protocol):
    def apply(self, obj: Obj) -> Obj:
        """Server-side apply of a whole object as field manager `mlops`, never forced: a field
        another manager owns is a FieldConflict naming the field and its owner."""
        ...

    def list(self, api_version: str, kind: str, selector: str) -> list[Obj]: ...

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None: ...

    def delete(self, api_version: str, kind: str, name: str) -> None:
        """Idempotent: a missing object is not an error."""
        ...

    def reachable(self) -> bool: ...


class DynamicCluster:
    def __init__(self, context: str | None, namespace: str) -> None:
        self.context = context
        self.namespace = namespace
        self._client: Any = None
        self._api: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            from kubernetes import dynamic

            dynamic_client: Any = dynamic.DynamicClient  # untyped library
            self._api = self._connect()
            self._client = dynamic_client(self._api)
        return self._client

    def _connect(self) -> Any:
        from kubernetes import client, config

        # The client's functions are untyped: go through Any.
        new_client: Any = config.new_client_from_config
        in_cluster: Any = config.load_incluster_config

        try:
            # KUBECONFIG is read here, not when the client library was imported.
            api = new_client(
                config_file=os.environ.get("KUBECONFIG"), context=self.context, persist_config=False
            )
        except (config.ConfigException, OSError) as exc:
            if self.context is not None or not os.environ.get("KUBERNETES_SERVICE_HOST"):
                where = f"context {self.context!r}" if self.context else "the current context"
                raise errors.ConfigError(f"kubeconfig: cannot use {where}: {exc}") from None
            configuration = client.Configuration()
            in_cluster(client_configuration=configuration)
            api = client.ApiClient(configuration)
        return api

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic import exceptions

        try:
            return self.client.resources.get(api_version=api_version, kind=kind)
        except exceptions.ResourceNotFoundError:
            hint = " (install the Gateway API CRDs)" if "gateway" in api_version else ""
            raise errors.ConfigError(
                f"the cluster does not serve {kind} {api_version}{hint}"
            ) from None
        except Exception as exc:
            raise _translate(exc, f"discover {kind}") from None

    def apply(self, obj: Obj) -> Obj:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        try:
            live = self.client.server_side_apply(
                resource, body=obj, namespace=self.namespace, field_manager=FIELD_MANAGER,
                force_conflicts=False, query_params=[("fieldValidation", "Strict")],
            )  # fmt: skip
        except Exception as exc:
            raise _translate(exc, f"apply {obj['kind']}/{obj['metadata']['name']}") from None
        result: Obj = live.to_dict()
        return result

    def list(self, api_version: str, kind: str, selector: str) -> list[Obj]:
        resource = self._resource(api_version, kind)
        try:
            found = resource.get(namespace=self.namespace, label_selector=selector)
        except Exception as exc:
            raise _translate(exc, f"list {kind}") from None
        return [item.to_dict() for item in found.items]

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        from kubernetes.dynamic import exceptions

        resource = self._resource(api_version, kind)
        try:
            found = resource.get(name=name, namespace=namespace or self.namespace)
        except exceptions.NotFoundError:
            return None
        except Exception as exc:
            raise _translate(exc, f"get {kind}/{name}") from None
        result: Obj = found.to_dict()
        return result

    def delete(self, api_version: str, kind: str, name: str) -> None:
        from kubernetes.dynamic import exceptions

        resource = self._resource(api_version, kind)
        try:
            resource.delete(name=name, namespace=self.namespace, propagation_policy="Foreground")
        except exceptions.NotFoundError:
            return
        except Exception as exc:
            raise _translate(exc, f"delete {kind}/{name}") from None

    def reachable(self) -> bool:
        from kubernetes import client

        try:
            self.client  # noqa: B018 - connects (kubeconfig errors are ConfigError)
            client.VersionApi(self._api).get_code(_request_timeout=10)
        except errors.ConfigError:
            raise
        except Exception:
            return False
        return True


def _translate(exc: Exception, doing: str) -> errors.MlopsError:
    """API errors say whether retrying helps: 409/5xx/429 and network errors may pass."""
    from kubernetes.dynamic import exceptions

    if isinstance(exc, errors.MlopsError):
        return exc
    if isinstance(exc, exceptions.DynamicApiError):
        status = int(exc.status or 0)
        owners = _conflicts(exc) if status == 409 else []
        if owners:
            fields = ", ".join(
                f"{field} (owned by field manager {owner!r})" for field, owner in owners
            )
            return FieldConflict(
                f"kubernetes: {doing}: conflict: {fields}; mlops does not force it: let that "
                "manager release the field, or drop it from what mlops applies",
                owners,
            )
        message = f"kubernetes: {doing}: {status} {_reason(exc)}"
        if status in (409, 429) or status >= 500:
            return errors.TransientError(message)
        if status in (401, 403):
            return errors.ConfigError(message + " (check the kubeconfig user's permissions)")
        return errors.PermanentError(message)
    return errors.TransientError(f"kubernetes: {doing}: cannot reach the API server ({exc})")


def _conflicts(exc: Any) -> list[tuple[str, str]]:
    """(field, manager) of each FieldManagerConflict cause in a 409 Status body."""
    import json
    import re

    try:
        body = json.loads(exc.body)
        causes = body.get("details", {}).get("causes") or []
    except (TypeError, ValueError, AttributeError):
        return []
    out = []
    for cause in causes[:20]:
        if not isinstance(cause, dict) or cause.get("reason") != "FieldManagerConflict":
            continue
        owner = re.search(r'conflict with "([^"]{1,128})"', str(cause.get("message", "")))
        out.append((str(cause.get("field", "?"))[:200], owner.group(1) if owner else "?"))
    return out


def _reason(exc: Any) -> str:
    import json

    try:
        body = json.loads(exc.body)
        return str(body.get("message") or exc.reason)
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)
