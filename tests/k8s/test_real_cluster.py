"""Against a real cluster, when `KUBECONFIG` is set: every rendered object is server-side
applied with dryRun=All, so the real API server's schemas, installed CRDs (Gateway API, KEDA),
admission and the kubeconfig user's RBAC judge them. Nothing is persisted. Without a cluster
(no KUBECONFIG, as on the machines that run CI here) the file is not collected (conftest):

    KUBECONFIG=~/.kube/config MLOPS_K8S_TEST_NAMESPACE=dry-run \
        pytest tests/k8s/test_real_cluster.py
"""

from __future__ import annotations

import os
from typing import Any

from tests.k8s.test_manifests import every_rendered_object


def test_every_rendered_object_is_accepted_by_a_real_api_server() -> None:
    from kubernetes import config, dynamic

    namespace = os.environ.get("MLOPS_K8S_TEST_NAMESPACE", "default")
    make_client: Any = dynamic.DynamicClient  # the client library is untyped
    new_api: Any = config.new_client_from_config
    client: Any = make_client(new_api())
    refused = []
    for obj in every_rendered_object():
        obj = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
        for subject in obj.get("subjects") or []:
            subject["namespace"] = namespace
        resource = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        try:
            client.server_side_apply(
                resource, body=obj, namespace=namespace, field_manager="mlops-dry-run",
                dry_run="All", query_params=[("fieldValidation", "Strict")],
            )  # fmt: skip
        except Exception as exc:  # collect every refusal, then fail once
            refused.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")
    assert refused == []
