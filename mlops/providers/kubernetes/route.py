"""The Gateway API HTTPRoute of one model (gateway.networking.k8s.io/v1), built and read back.

Rules, most specific first (Gateway API picks the longest matching path prefix):
- per loaded version, `/v2/models/NAME/versions/SEMVER` goes to that version's Service only,
  rewritten to Triton's integer version, so a pinned request (conformance) reaches it with no
  weight;
- `/v2/models/NAME` splits by `backendRefs[].weight` and, for a shadow rollout, copies
  requests with a `RequestMirror` filter (`percent` is Gateway API v1.3+; omitted at 100).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import semver as semver_

from mlops import errors
from mlops.providers.kubernetes import manifests as m
from mlops.state import models as state

MAX_RULES = 16  # HTTPRoute spec.rules maxItems


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
        if shadow is not None and shadow.percent > 0:
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
    return {
        "apiVersion": f"{m.GATEWAY_GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": route_name(model),
            "namespace": options.namespace,
            "labels": m.labels(model, m.TRAFFIC),
        },
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
