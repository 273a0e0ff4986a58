"""The least-privilege identity of the controller (`mlops manifests --rbac`): a ServiceAccount,
a Role and a RoleBinding in the workspace's namespace, covering exactly the calls
`KubernetesRuntime` makes, verb by verb, and nothing outside that namespace. No wildcard
anywhere; the Gateway is readable only by name (its address), and only when it lives in the
same namespace: a Gateway elsewhere needs a grant there that this Role does not give.

`create` sits next to `patch` because a server-side apply of an object that does not exist yet
creates it. Pods are only read (readiness for `status`); the Deployment controller makes them.
"""

from __future__ import annotations

from typing import Any

from mlops.providers.kubernetes import manifests as m

SERVICE_ACCOUNT = "mlops-controller"
WRITE = ["get", "list", "create", "patch", "delete"]
READ = ["get", "list"]
# (API group, resources, verbs): what the runtime writes and reads in its namespace.
RULES: list[tuple[str, list[str], list[str]]] = [
    ("", ["configmaps", "services"], WRITE),
    ("", ["pods"], READ),
    ("apps", ["deployments"], WRITE),
    ("keda.sh", ["scaledobjects"], WRITE),
    (m.GATEWAY_GROUP, ["httproutes"], WRITE),
]


def controller_rbac(options: m.Options) -> list[m.Obj]:
    """ServiceAccount, Role and RoleBinding for the controller in `options.namespace`."""
    namespace = options.namespace
    labels = {m.NAME: "mlops", m.COMPONENT: "controller", m.MANAGED_BY: "mlops"}

    def meta(name: str) -> dict[str, Any]:
        return {"name": name, "namespace": namespace, "labels": dict(labels)}

    rules: list[dict[str, Any]] = [
        {"apiGroups": [group], "resources": resources, "verbs": verbs}
        for group, resources, verbs in RULES
    ]
    gateway = options.gateway
    if gateway is not None and gateway.namespace in (None, namespace):
        rules.append(
            {
                "apiGroups": [m.GATEWAY_GROUP],
                "resources": ["gateways"],
                "resourceNames": [gateway.name],
                "verbs": ["get"],
            }
        )
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(SERVICE_ACCOUNT)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta(SERVICE_ACCOUNT),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta(SERVICE_ACCOUNT),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": SERVICE_ACCOUNT,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": namespace}
            ],
        },
    ]


def gateway_note(options: m.Options) -> str | None:
    """What the Role leaves out on purpose: a Gateway in another namespace."""
    gateway = options.gateway
    if gateway is None or gateway.namespace in (None, options.namespace):
        return None
    return (
        f"the Role covers namespace {options.namespace} only: reading the address of Gateway "
        f"{gateway.namespace}/{gateway.name} needs 'get' on gateways named {gateway.name} in "
        f"{gateway.namespace}, granted there by its owner (or set the address via a Gateway "
        f"in {options.namespace})"
    )


def allows(rules: list[dict[str, Any]], verb: str, group: str, resource: str, name: str) -> bool:
    """Whether a request (verb, API group, resource, object name or '') passes `rules`, as
    the RBAC authorizer decides (resourceNames restrict get/patch/delete on a named object)."""
    for rule in rules:
        if verb not in rule["verbs"] or group not in rule["apiGroups"]:
            continue
        if resource not in rule["resources"]:
            continue
        names = rule.get("resourceNames")
        if names and name not in names:
            continue
        return True
    return False
