"""A Kubernetes API server double on loopback: discovery, server-side apply, list, get, delete.

No cluster runs on this machine; this lets the provider go through the real `kubernetes`
client (kubeconfig, discovery, HTTP, JSON) so the tests see the exact bodies a cluster would
receive. It plays the controllers too: a Deployment gets its Pods, ready at once, and a route
is accepted at once.

Server-side apply keeps field ownership per leaf field (`metadata.managedFields`): a field
another manager owns with another value is a 409 conflict unless the apply forces, as the
real API server does. `patch_as` plays another manager (an HPA controller writing
`spec.replicas`). Every request is recorded as the RBAC verb it needs (`verbs`), so tests can
hold the client to a Role.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

GROUPS: dict[str, list[tuple[str, str]]] = {
    "v1": [("configmaps", "ConfigMap"), ("services", "Service"), ("pods", "Pod")],
    "apps/v1": [("deployments", "Deployment")],
    "keda.sh/v1alpha1": [("scaledobjects", "ScaledObject")],
    "gateway.networking.k8s.io/v1": [("httproutes", "HTTPRoute"), ("gateways", "Gateway")],
}


class ApiServer:
    def __init__(self, kubelet: Any = None) -> None:
        """`kubelet` (tests/k8s/kubelet.py): run Deployments as real containers and routes on
        a real proxy; without it everything is ready and in force at once."""
        self.kubelet = kubelet
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.applied: list[dict[str, Any]] = []  # bodies exactly as received
        self.calls: list[tuple[str, str, dict[str, list[str]]]] = []
        # (verb, API group, resource, namespace, name) as RBAC would authorize each request.
        self.verbs: list[tuple[str, str, str, str, str]] = []
        self.owners: dict[tuple[str, str, str], dict[str, str]] = {}  # leaf path -> manager
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.handle(self, "GET")

            def do_PATCH(self) -> None:
                server.handle(self, "PATCH")

            def do_DELETE(self) -> None:
                server.handle(self, "DELETE")

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()

    def kubeconfig(self, path: Path, context: str = "test") -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": context,
                    "clusters": [{"name": "c", "cluster": {"server": self.url}}],
                    "users": [{"name": "u", "user": {"token": "t"}}],
                    "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
                }
            )
        )
        return path

    def lists(self, plural: str) -> int:
        return sum(
            1
            for method, path, query in self.calls
            if method == "GET" and path.endswith(f"/{plural}") and "labelSelector" in query
        )

    # -- request handling ---------------------------------------------------------------------

    def handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(request.path)
        query = parse_qs(url.query)
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        with self.lock:
            self.calls.append((method, url.path, query))
            code, payload = self.route(method, url.path, query, body)
        data = json.dumps(payload).encode()
        request.send_response(code)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def route(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any]:
        path = path.rstrip("/") or "/"
        if path == "/version":
            return 200, {
                "major": "1",
                "minor": "30",
                "gitVersion": "v1.30.0",
                "gitCommit": "0" * 40,
                "gitTreeState": "clean",
                "buildDate": "2024-04-17T00:00:00Z",
                "goVersion": "go1.22.2",
                "compiler": "gc",
                "platform": "linux/amd64",
            }
        if path == "/api":
            return 200, {
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [],
            }
        if path == "/apis":
            groups = [gv for gv in GROUPS if "/" in gv]
            return 200, {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": gv.split("/")[0],
                        "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                        "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
                    }
                    for gv in groups
                ],
            }
        parts = path.strip("/").split("/")
        gv = "v1" if parts[0] == "api" else "/".join(parts[1:3])
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if gv not in GROUPS:
            return 404, _status(404, f"{path} not found")
        if not rest:
            return 200, {
                "kind": "APIResourceList",
                "groupVersion": gv,
                "resources": [
                    {
                        "name": plural,
                        "singularName": kind.lower(),
                        "namespaced": True,
                        "kind": kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    }
                    for plural, kind in GROUPS[gv]
                ],
            }
        namespace, plural, name = rest[1], rest[2], (rest[3] if len(rest) > 3 else None)
        kind = dict(GROUPS[gv])[plural]
        key = (plural, namespace, name or "")
        group = gv.split("/")[0] if "/" in gv else ""
        verb = {"PATCH": "patch", "DELETE": "delete"}.get(method) or ("get" if name else "list")
        self.verbs.append((verb, group, plural, namespace, name or ""))
        if method == "PATCH":
            if key not in self.store:
                self.verbs.append(("create", group, plural, namespace, name or ""))
            return self.apply(key, gv, kind, yaml.safe_load(body), query)
        if method == "DELETE":
            if key not in self.store:
                return 404, _status(404, "gone")
            self.owners.pop(key, None)
            if kind == "Deployment":
                for pod in _pods_of(self.store, name or ""):
                    del self.store[pod]
            gone = self.store.pop(key)
            if self.kubelet is not None and kind == "Deployment":
                self.kubelet.delete(name)
            if self.kubelet is not None and kind == "HTTPRoute":
                self.kubelet.route(self.store)
            return 200, gone
        if self.kubelet is not None and plural in ("deployments", "pods"):
            self._observe(namespace)
        if name is not None:
            return (200, self.store[key]) if key in self.store else (404, _status(404, "not found"))
        wanted = dict(s.split("=", 1) for s in query.get("labelSelector", [""])[0].split(",") if s)
        items = [
            o
            for (p, ns, _), o in sorted(self.store.items())
            if p == plural and ns == namespace and wanted.items() <= o["metadata"]["labels"].items()
        ]
        return 200, {"kind": f"{kind}List", "apiVersion": gv, "metadata": {}, "items": items}

    def apply(
        self,
        key: tuple[str, str, str],
        gv: str,
        kind: str,
        obj: dict[str, Any],
        query: dict[str, list[str]],
    ) -> tuple[int, Any]:
        (manager,) = query.get("fieldManager") or ["?"]
        assert query.get("force") in (None, ["false"]), "mlops never forces a conflict"
        assert query.get("fieldValidation") == ["Strict"], query
        assert (obj["apiVersion"], obj["kind"]) == (gv, kind)
        old = self.store.get(key)
        owners = self.owners.setdefault(key, {})
        conflicts = [
            (path, owner)
            for path, value in _leaves(obj)
            if (owner := owners.get(path)) not in (None, manager) and _at(old or {}, path) != value
        ]
        if conflicts:
            causes = [
                {
                    "reason": "FieldManagerConflict",
                    "message": f'conflict with "{owner}" using {gv}',
                    "field": "." + path,
                }
                for path, owner in conflicts
            ]
            body = _status(409, f"Apply failed with {len(causes)} conflict(s)")
            return 409, body | {"reason": "Conflict", "details": {"causes": causes}}
        for path, _ in _leaves(obj):
            owners[path] = manager
        if old is not None:  # fields of other managers survive an apply that omits them
            for path, owner in owners.items():
                if owner != manager and _at(obj, path) is None and _at(old, path) is not None:
                    _put(obj, path, _at(old, path))
        self.applied.append(json.loads(json.dumps(obj)))
        generation = (old or {}).get("metadata", {}).get("generation", 0)
        if old is None or old.get("spec") != obj.get("spec") or old.get("data") != obj.get("data"):
            generation += 1
        live = json.loads(json.dumps(obj))
        live["metadata"] |= {
            "generation": generation,
            "uid": f"uid-{key[2]}",
            "resourceVersion": str(len(self.applied)),
        }
        live["metadata"]["managedFields"] = _managed_fields(owners, gv)
        if kind == "Deployment":
            n = live["spec"].get("replicas", 1)
            live["status"] = {
                "observedGeneration": generation,
                "replicas": n,
                "readyReplicas": n,
                "updatedReplicas": n,
                "availableReplicas": n,
            }
            if self.kubelet is None:
                self._pods(key, live, n)
            else:  # real containers: ready when their engines say so
                live["status"] |= {"readyReplicas": 0, "availableReplicas": 0}
                self.kubelet.deploy(live, self.store)
        if kind == "HTTPRoute":
            accepted = {
                "type": "Accepted",
                "status": "True",
                "reason": "Accepted",
                "observedGeneration": generation,
            }
            live["status"] = {
                "parents": [
                    {"parentRef": p, "controllerName": "example.com/gw", "conditions": [accepted]}
                    for p in live["spec"].get("parentRefs", [])
                ]
            }
        self.store[key] = live
        if self.kubelet is not None and kind == "HTTPRoute":
            self.kubelet.route(self.store)
        return 200, live

    def _observe(self, namespace: str) -> None:
        """The kubelet's view: each Deployment's ready replicas and its Pods, probed now."""
        for key, deployment in list(self.store.items()):
            if key[0] != "deployments" or key[1] != namespace:
                continue
            ready, pods = self.kubelet.status(deployment)
            n = deployment["spec"].get("replicas", 1)
            up = ready if len(pods) == n else 0  # a rollout in progress is not available
            deployment["status"] |= {
                "readyReplicas": ready,
                "availableReplicas": up,
                "updatedReplicas": len(pods),
            }
            for old in _pods_of(self.store, key[2]):
                del self.store[old]
            for i, pod in enumerate(pods):
                template = deployment["spec"]["template"]
                self.store[("pods", namespace, f"{key[2]}-{i}")] = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": f"{key[2]}-{i}",
                        "namespace": namespace,
                        "labels": dict(template["metadata"]["labels"]),
                    },
                    "status": {
                        "phase": "Running",
                        "conditions": [
                            {"type": "Ready", "status": "True" if pod.ready else "False"}
                        ],
                    },
                }

    def add_gateway(self, name: str, namespace: str, address: str) -> None:
        """A Gateway with an address (the proxy's host:port), as its controller reports it."""
        with self.lock:
            self.store[("gateways", namespace, name)] = {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": name, "namespace": namespace, "labels": {}},
                "spec": {"gatewayClassName": "standin", "listeners": []},
                "status": {"addresses": [{"type": "Hostname", "value": address}]},
            }

    def _pods(self, key: tuple[str, str, str], deployment: dict[str, Any], n: int) -> None:
        """The ReplicaSet controller and kubelet: n ready Pods from the template."""
        name, namespace = key[2], key[1]
        for pod in _pods_of(self.store, name):
            del self.store[pod]
        template = deployment["spec"]["template"]
        for i in range(n):
            pod_name = f"{name}-{i}"
            self.store[("pods", namespace, pod_name)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": pod_name,
                    "namespace": namespace,
                    "labels": dict(template["metadata"]["labels"]),
                },
                "spec": template["spec"],
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                        {"name": c["name"], "ready": True, "restartCount": 0, "image": c["image"]}
                        for c in template["spec"]["containers"]
                    ],
                },
            }

    def patch_as(self, manager: str, plural: str, name: str, change: dict[str, Any]) -> None:
        """Another field manager writes `change` into a stored object (e.g. an autoscaler
        setting spec.replicas): it owns those fields from now on."""
        with self.lock:
            key = next(k for k in self.store if k[0] == plural and k[2] == name)
            live = self.store[key]
            for path, value in _leaves(change):
                _put(live, path, value)
                self.owners.setdefault(key, {})[path] = manager
            gv = live["apiVersion"]
            live["metadata"]["managedFields"] = _managed_fields(self.owners[key], gv)
            if live["kind"] == "Deployment":
                n = live["spec"].get("replicas", 1)
                live["status"] |= {"replicas": n, "readyReplicas": n, "updatedReplicas": n}
                self._pods(key, live, n)


def _pods_of(store: dict[tuple[str, str, str], Any], deployment: str) -> list[tuple[str, str, str]]:
    return [
        k for k in store if k[0] == "pods" and re.fullmatch(rf"{re.escape(deployment)}-\d+", k[2])
    ]


def _leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Leaf fields as dotted paths (lists are leaves, as atomic lists are in SSA)."""
    if isinstance(obj, dict) and obj:
        out: list[tuple[str, Any]] = []
        for k, v in obj.items():
            if prefix == "" and k in ("apiVersion", "kind", "status"):
                continue
            if prefix == "metadata" and k in ("name", "namespace", "managedFields"):
                continue
            out += _leaves(v, f"{prefix}.{k}" if prefix else k)
        return out
    return [(prefix, obj)]


def _at(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def _put(obj: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        obj = obj.setdefault(part, {})
    obj[last] = value


def _managed_fields(owners: dict[str, str], gv: str) -> list[dict[str, Any]]:
    """managedFields entries (FieldsV1: `f:` keys) per manager, as the API server shows them."""
    by_manager: dict[str, dict[str, Any]] = {}
    for path, manager in sorted(owners.items()):
        node = by_manager.setdefault(manager, {})
        for part in path.split("."):
            node = node.setdefault(f"f:{part}", {})
    return [
        {
            "manager": manager,
            "operation": "Apply" if manager == "mlops" else "Update",
            "apiVersion": gv,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        }
        for manager, fields in sorted(by_manager.items())
    ]


def _status(code: int, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "code": code,
    }
