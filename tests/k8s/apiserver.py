"""A Kubernetes API server double on loopback: discovery, server-side apply, list, get, delete.

No cluster runs on this machine; this lets the provider go through the real `kubernetes`
client (kubeconfig, discovery, HTTP, JSON) so the tests see the exact bodies a cluster would
receive. It plays the controllers too: a Deployment is ready and a route accepted at once.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

GROUPS: dict[str, list[tuple[str, str]]] = {
    "v1": [("configmaps", "ConfigMap"), ("services", "Service")],
    "apps/v1": [("deployments", "Deployment")],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler")],
    "gateway.networking.k8s.io/v1": [("httproutes", "HTTPRoute"), ("gateways", "Gateway")],
}


class ApiServer:
    def __init__(self) -> None:
        self.store: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.applied: list[dict[str, Any]] = []  # bodies exactly as received
        self.calls: list[tuple[str, str, dict[str, list[str]]]] = []
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
        if method == "PATCH":
            return self.apply(key, gv, kind, yaml.safe_load(body), query)
        if method == "DELETE":
            return (200, self.store.pop(key)) if key in self.store else (404, _status(404, "gone"))
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
        assert query.get("fieldManager") == ["mlops"] and query.get("force") == ["true"], query
        assert query.get("fieldValidation") == ["Strict"], query
        assert (obj["apiVersion"], obj["kind"]) == (gv, kind)
        self.applied.append(json.loads(json.dumps(obj)))
        old = self.store.get(key)
        generation = (old or {}).get("metadata", {}).get("generation", 0)
        if old is None or old.get("spec") != obj.get("spec") or old.get("data") != obj.get("data"):
            generation += 1
        live = json.loads(json.dumps(obj))
        live["metadata"] |= {
            "generation": generation,
            "uid": f"uid-{key[2]}",
            "resourceVersion": str(len(self.applied)),
        }
        if kind == "Deployment":
            n = live["spec"].get("replicas", 1)
            live["status"] = {
                "observedGeneration": generation,
                "replicas": n,
                "readyReplicas": n,
                "updatedReplicas": n,
                "availableReplicas": n,
            }
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
        return 200, live


def _status(code: int, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "code": code,
    }
