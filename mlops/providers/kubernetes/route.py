"""The Gateway API HTTPRoute of one model (gateway.networking.k8s.io/v1), built and read back.

Rules, most specific first (Gateway API picks the longest matching path prefix):
- per loaded version, `/v2/models/NAME/versions/SEMVER` goes to that version's Service only,
  rewritten to Triton's integer version, so a pinned request (conformance) reaches it with no
  weight;
- `/v2/models/NAME` splits by `backendRefs[].weight`. A shadow rollout on the mlops engine
  is mirrored by the primary engine itself, which compares the answers (remote shadow,
  `mlops.serving.remote_shadow`): the shadow goes into the model's `NAME-shadow` ConfigMap,
  which every version's pods mount, and into the route's `mlops.dev/shadow` annotation, which
  is read back. Triton cannot compare, so there a `RequestMirror` filter only sends copies
  (`percent` is Gateway API v1.3+; omitted at 100).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import semver as semver_

from mlops import errors
from mlops.providers.kubernetes import manifests as m
from mlops.state import models as state

MAX_RULES = 16  # HTTPRoute spec.rules maxItems
SHADOW_ANNOTATION = f"{m.ANNOTATION}shadow"


def shadow_config(model: str, shadow: state.ShadowRoute | None, options: m.Options) -> m.Obj:
    """The ConfigMap the model's mlops engine pods mirror from (empty: no shadow)."""
    shadows: dict[str, Any] = {}
    if shadow is not None and shadow.percent > 0:
        service = m.workload_name(model, shadow.version)
        url = f"http://{service}.{options.namespace}.svc:{m.HTTP_PORT}"
        shadows[model] = {"version": shadow.version, "url": url, "percent": shadow.percent}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": m.shadow_config_name(model),
            "namespace": options.namespace,
            "labels": m.labels(model, m.TRAFFIC),
        },
        "data": {m.SHADOW_FILE: json.dumps({"shadows": shadows}, sort_keys=True)},
    }


def route_name(model: str) -> str:
    return model


def model_prefix(model: str) -> str:
    return f"/v2/models/{model}"


def _key(version: str) -> semver_.Version:
    return semver_.Version.parse(version)


def _ref(model: str, version: str, weight: int | None = None) -> m.Obj:
    ref: m.Obj = {"name": m.workload_name(model, version), "port": m.HTTP_PORT}
    return ref if weight is None else {**ref, "weight": weight}


def build_route(
    model: str,
    weights: Mapping[str, int],
    shadow: state.ShadowRoute | None,
    loaded: Mapping[str, int],
    options: m.Options,
) -> m.Obj | None:
    """The route for `weights` and `shadow` over the `loaded` versions (semver -> registry
    integer version); None when nothing is loaded (the route is then deleted)."""
    wanted = set(weights) | ({shadow.version} if shadow else set())
    missing = sorted(wanted - set(loaded), key=_key)
    if missing:
        raise errors.PermanentError(
            f"{model}: cannot route to {', '.join(missing)}: no Deployment serves it"
        )
    if not loaded:
        return None
    if len(loaded) + 1 > MAX_RULES:
        raise errors.PermanentError(f"{model}: more than {MAX_RULES - 1} versions loaded at once")
    rules = [
        _pinned(model, version, loaded[version], options) for version in sorted(loaded, key=_key)
    ]
    if weights:
        main: m.Obj = {
            "matches": [{"path": {"type": "PathPrefix", "value": model_prefix(model)}}],
            "backendRefs": [_ref(model, v, weights[v]) for v in sorted(weights, key=_key)],
        }
        if shadow is not None and shadow.percent > 0 and options.engine == "triton":
            mirror: m.Obj = {"backendRef": _ref(model, shadow.version)}
            if shadow.percent < 100:
                mirror["percent"] = shadow.percent
            main["filters"] = [{"type": "RequestMirror", "requestMirror": mirror}]
        rules.append(main)
    spec: m.Obj = {"rules": rules}
    if options.gateway is not None:
        parent: m.Obj = {"group": m.GATEWAY_GROUP, "kind": "Gateway", "name": options.gateway.name}
        if options.gateway.namespace:
            parent["namespace"] = options.gateway.namespace
        spec = {"parentRefs": [parent], **spec}
    if options.hostnames:
        spec = {"hostnames": list(options.hostnames), **spec}
    metadata: m.Obj = {
        "name": route_name(model),
        "namespace": options.namespace,
        "labels": m.labels(model, m.TRAFFIC),
    }
    if shadow is not None and options.engine == "mlops":
        # The primary engine mirrors (shadow ConfigMap); the route records it for read-back.
        value = {"version": shadow.version, "percent": shadow.percent}
        metadata["annotations"] = {SHADOW_ANNOTATION: json.dumps(value, sort_keys=True)}
    return {
        "apiVersion": f"{m.GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": metadata,
        "spec": spec,
    }


def _pinned(model: str, version: str, number: int, options: m.Options) -> m.Obj:
    rule: m.Obj = {
        "matches": [
            {"path": {"type": "PathPrefix", "value": f"{model_prefix(model)}/versions/{version}"}}
        ],
        "backendRefs": [_ref(model, version, 1)],
    }
    if options.engine == "triton":
        # Triton knows the version by its integer; the engine by its semver.
        target = f"{model_prefix(model)}/versions/{number}"
        rewrite = {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": target}}
        rule["filters"] = [{"type": "URLRewrite", "urlRewrite": rewrite}]
    return rule


def read_route(
    route: Mapping[str, Any], services: Mapping[str, str]
) -> tuple[dict[str, int], state.ShadowRoute | None, int]:
    """Weights, shadow and generation from a live route. `services` maps Service name to
    semver; a backend that no managed Service explains is kept under its own name."""
    model = route.get("metadata", {}).get("labels", {}).get(m.NAME, "")
    generation = int(route.get("metadata", {}).get("generation") or 0)
    weights: dict[str, int] = {}
    shadow: state.ShadowRoute | None = None
    recorded = (route.get("metadata", {}).get("annotations") or {}).get(SHADOW_ANNOTATION)
    if recorded:
        try:
            value = json.loads(recorded)
            name = str(value["version"])
            shadow = state.ShadowRoute(version=services.get(name, name), percent=value["percent"])
        except (ValueError, KeyError, TypeError):
            raise errors.PermanentError(
                f"route {model}: annotation {SHADOW_ANNOTATION} is not mlops's"
            ) from None
    for rule in route.get("spec", {}).get("rules") or []:
        paths = [match.get("path", {}).get("value") for match in rule.get("matches") or []]
        if paths != [model_prefix(model)]:
            continue
        for ref in rule.get("backendRefs") or []:
            weights[services.get(ref["name"], ref["name"])] = int(ref.get("weight", 1))
        for item in rule.get("filters") or []:
            mirror = item.get("requestMirror") if item.get("type") == "RequestMirror" else None
            if mirror:
                name = mirror["backendRef"]["name"]
                fraction = mirror.get("fraction")
                percent = int(mirror.get("percent", 100))
                if fraction:  # set by hand: {numerator, denominator (default 100)}
                    percent = round(100 * fraction["numerator"] / fraction.get("denominator", 100))
                shadow = state.ShadowRoute(version=services.get(name, name), percent=percent)
    return weights, shadow, generation
