"""The HTTPRoute: weights, mirror, pinned versions; checked against the Gateway API v1 spec.

The official CRD schema is third-party, so it is not in this repository: point
MLOPS_GATEWAY_API_CRDS at the release's standard-install.yaml (or the HTTPRoute CRD file) to
validate against it. The structural checks below encode the CRD's limits either way.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from mlops import errors
from mlops.providers.kubernetes import route as r
from mlops.serving import remote_shadow
from mlops.state import models as state
from tests.k8s import conftest as c

LOADED = {"2.3.1": 7, "2.4.0": 8}
PATH = re.compile(r"^/(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})*$")
RULE_KEYS = {"name", "matches", "filters", "backendRefs", "timeouts", "retry", "sessionPersistence"}
REF_KEYS = {"group", "kind", "name", "namespace", "port", "weight", "filters"}
FILTERS = {
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "CORS",
    "ExtensionRef",
}


def structural_problems(route: dict[str, Any]) -> list[str]:
    """HTTPRoute v1 limits from the Gateway API spec (maxItems, ranges, enums, CEL rules)."""
    out: list[str] = []
    spec = route["spec"]
    if route["apiVersion"] != "gateway.networking.k8s.io/v1" or route["kind"] != "HTTPRoute":
        out.append("apiVersion/kind")
    if set(spec) - {"parentRefs", "hostnames", "rules"}:
        out.append(f"unknown spec keys {set(spec)}")
    for parent in spec.get("parentRefs", []):
        if not parent.get("name") or set(parent) - {
            "group",
            "kind",
            "name",
            "namespace",
            "sectionName",
            "port",
        }:
            out.append(f"parentRef {parent}")
    rules = spec.get("rules", [])
    if not 1 <= len(rules) <= 16:
        out.append("rules: 1..16")
    for rule in rules:
        out += [f"rule key {k}" for k in set(rule) - RULE_KEYS]
        refs = rule.get("backendRefs", [])
        if len(refs) > 16:
            out.append("backendRefs: at most 16")
        for ref in refs:
            out += [f"backendRef key {k}" for k in set(ref) - REF_KEYS]
            if not 0 <= ref.get("weight", 1) <= 1_000_000:
                out.append("weight: 0..1000000")
            if not 1 <= ref["port"] <= 65535 or not 1 <= len(ref["name"]) <= 253:
                out.append(f"backendRef {ref}")
        prefixes = [
            mt["path"]["value"]
            for mt in rule.get("matches", [])
            if mt["path"]["type"] == "PathPrefix"
        ]
        for value in prefixes:
            if not PATH.match(value) or len(value) > 1024 or value.endswith("/"):
                out.append(f"path {value}")
        for f in rule.get("filters", []):
            if f["type"] not in FILTERS:
                out.append(f"filter type {f['type']}")
            mirror = f.get("requestMirror")
            if f["type"] == "RequestMirror":
                if not mirror or "backendRef" not in mirror:
                    out.append("RequestMirror needs requestMirror.backendRef")
                elif "percent" in mirror and "fraction" in mirror:
                    out.append("percent and fraction are exclusive")
                elif not 0 <= mirror.get("percent", 100) <= 100:
                    out.append("percent: 0..100")
            rewrite = f.get("urlRewrite", {}).get("path", {}).get("type")
            # CEL rule of the CRD: ReplacePrefixMatch needs a PathPrefix match.
            if rewrite == "ReplacePrefixMatch" and not prefixes:
                out.append("ReplacePrefixMatch without PathPrefix")
    return out


def build(
    weights: dict[str, int], shadow: state.ShadowRoute | None = None, **opts: Any
) -> dict[str, Any]:
    route = r.build_route("fraud-scorer", weights, shadow, LOADED, c.options(**opts))
    assert route is not None
    return route


CASES = {
    "canary": ({"2.3.1": 90, "2.4.0": 10}, None),
    "shadow-partial": ({"2.3.1": 100}, state.ShadowRoute(version="2.4.0", percent=25)),
    "shadow-full": ({"2.3.1": 100}, state.ShadowRoute(version="2.4.0", percent=100)),
    "no-traffic": ({}, None),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_route_is_structurally_valid(case: str) -> None:
    route = build(*CASES[case])
    assert structural_problems(route) == []


@pytest.mark.parametrize("engine", ["mlops", "triton"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_route_matches_official_crd_schema(case: str, engine: str) -> None:
    """Gateway API v1.4.1's HTTPRoute schema, read from ../shared/data (never skipped)."""
    assert c.crd_problems(build(*CASES[case], engine=engine)) == []


def test_the_crd_check_catches_a_bad_route() -> None:
    route = build({"2.3.1": 100})
    route["spec"]["rules"][-1]["backendRefs"][0]["weight"] = -1
    route["spec"]["rules"][-1]["bogus"] = True
    problems = " ".join(c.crd_problems(route))
    assert "-1" in problems and "bogus" in problems


def test_weights_become_backend_refs_in_semver_order() -> None:
    route = build({"2.4.0": 10, "2.3.1": 90})
    main = route["spec"]["rules"][-1]
    assert main["matches"] == [{"path": {"type": "PathPrefix", "value": "/v2/models/fraud-scorer"}}]
    assert main["backendRefs"] == [
        {"name": "fraud-scorer-v2-3-1", "port": 8000, "weight": 90},
        {"name": "fraud-scorer-v2-4-0", "port": 8000, "weight": 10},
    ]
    assert "filters" not in main
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "inference",
            "namespace": "gateways",
        }
    ]


def test_mirror_percent_only_below_100() -> None:
    partial = build(*CASES["shadow-partial"], engine="triton")["spec"]["rules"][-1]["filters"]
    assert partial == [
        {
            "type": "RequestMirror",
            "requestMirror": {
                "backendRef": {"name": "fraud-scorer-v2-4-0", "port": 8000},
                "percent": 25,
            },
        }
    ]
    full = build(*CASES["shadow-full"], engine="triton")["spec"]["rules"][-1]["filters"][0]
    full = full["requestMirror"]
    assert "percent" not in full  # works with Gateway API releases before percent existed


def test_pinned_version_rules_rewrite_to_triton_integers() -> None:
    rules = build({"2.3.1": 100}, engine="triton")["spec"]["rules"]
    pinned = {rule["matches"][0]["path"]["value"]: rule for rule in rules[:-1]}
    rule = pinned["/v2/models/fraud-scorer/versions/2.4.0"]
    assert rule["backendRefs"] == [{"name": "fraud-scorer-v2-4-0", "port": 8000, "weight": 1}]
    assert (
        rule["filters"][0]["urlRewrite"]["path"]["replacePrefixMatch"]
        == "/v2/models/fraud-scorer/versions/8"
    )
    engine = build({"2.3.1": 100}, engine="mlops")["spec"]["rules"][0]
    assert "filters" not in engine  # the mlops engine knows versions by semver


@pytest.mark.parametrize("engine", ["mlops", "triton"])
def test_read_route_round_trips_weights_and_shadow(engine: str) -> None:
    services = {"fraud-scorer-v2-3-1": "2.3.1", "fraud-scorer-v2-4-0": "2.4.0"}
    for weights, shadow in CASES.values():
        live = build(weights, shadow, engine=engine)
        live["metadata"]["generation"] = 4
        assert r.read_route(live, services) == (weights, shadow, 4)


def test_mlops_engine_shadow_is_mirrored_by_the_primary_not_the_gateway() -> None:
    shadow = state.ShadowRoute(version="2.4.0", percent=25)
    route = build({"2.3.1": 100}, shadow)
    assert all("filters" not in rule or rule["filters"][0]["type"] != "RequestMirror"
               for rule in route["spec"]["rules"])  # fmt: skip
    assert json.loads(route["metadata"]["annotations"][r.SHADOW_ANNOTATION]) == {
        "version": "2.4.0",
        "percent": 25,
    }
    config = r.shadow_config("fraud-scorer", shadow, c.options())
    c.assert_core_valid(config)
    assert config["metadata"]["name"] == "fraud-scorer-shadow"
    doc = json.loads(config["data"]["shadow.json"])
    # What the engine reads (mlops.serving.remote_shadow): the shadow's Service, by version.
    assert remote_shadow.parse(config["data"]["shadow.json"]) == {
        "fraud-scorer": remote_shadow.Target(
            "2.4.0", "http://fraud-scorer-v2-4-0.models.svc:8000", 25.0
        )
    }
    assert doc["shadows"]["fraud-scorer"]["percent"] == 25
    cleared = r.shadow_config("fraud-scorer", None, c.options())["data"]["shadow.json"]
    assert remote_shadow.parse(cleared) == {}
    with pytest.raises(errors.PermanentError, match="annotation"):
        broken = build({"2.3.1": 100}, shadow)
        broken["metadata"]["annotations"][r.SHADOW_ANNOTATION] = "{"
        r.read_route(broken, {})


def test_routing_to_a_version_without_deployment_is_refused() -> None:
    with pytest.raises(errors.PermanentError, match=r"9\.9\.9"):
        r.build_route("fraud-scorer", {"9.9.9": 100}, None, LOADED, c.options())
    assert r.build_route("fraud-scorer", {}, None, {}, c.options()) is None
    too_many = {f"1.0.{i}": i + 1 for i in range(16)}
    with pytest.raises(errors.PermanentError, match="versions loaded"):
        r.build_route("fraud-scorer", {}, None, too_many, c.options())
