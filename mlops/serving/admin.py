"""Control endpoints: health, metadata, repository, routing, feedback and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import exposition

from mlops import __version__
from mlops.serving import sampling, schema
from mlops.serving.errors import BadRequest, MethodNotAllowed, NotFound
from mlops.serving.http import Receive, Scope, Send, json_body, read_body, respond, respond_json
from mlops.serving.router import semver_key

if TYPE_CHECKING:
    from mlops.serving.app import Engine

SERVER = {
    "name": "mlops",
    "version": __version__,
    "extensions": [
        "binary_tensor_data",
        "model_repository",
        "statistics",
        "model_configuration",
        "mlops_routing",
        "mlops_feedback",
    ],
}
_ADMIN_BODY_LIMIT = 1 << 20


async def handle(
    engine: Engine, scope: Scope, receive: Receive, send: Send, parts: list[str]
) -> None:
    """`parts` is the path split on '/', without the leading empty string and 'v2'."""
    method = scope["method"]
    head = parts[0] if parts else ""
    if head == "" and len(parts) <= 1:
        _require(method, "GET")
        await respond_json(send, 200, SERVER)
    elif head == "health" and len(parts) == 2 and parts[1] in ("live", "ready"):
        _require(method, "GET")
        reason = None if parts[1] == "live" else engine.unready_reason()
        doc: dict[str, Any] = {parts[1]: reason is None}
        if reason is not None:
            doc["reason"] = reason
        await respond_json(send, 200 if reason is None else 503, doc)
    elif head == "models" and len(parts) >= 2:
        _require(method, "GET")
        await _model(engine, send, parts[1:])
    elif head == "repository":
        if parts[1:] != ["index"]:
            engine.check_admin(scope)  # load and unload: admin address (and token) only
        _require(method, "POST")
        body = json_body(await read_body(scope, receive, _ADMIN_BODY_LIMIT))
        await _repository(engine, send, parts[1:], body)
    elif head == "routing" and len(parts) == 1:
        engine.check_admin(scope)
        _require(method, "GET")
        await respond_json(send, 200, engine.router.describe())
    elif head == "routing" and len(parts) == 2:
        engine.check_admin(scope)
        _require(method, "PUT")
        body = json_body(await read_body(scope, receive, _ADMIN_BODY_LIMIT))
        generation = engine.router.update(parts[1], body)
        await respond_json(send, 200, {"generation": generation})
    elif head == "feedback" and len(parts) == 1:
        _require(method, "POST")
        body = json_body(await read_body(scope, receive, _ADMIN_BODY_LIMIT))
        await respond_json(send, 200, engine.feedback.record(body))
    elif head == "samples":
        engine.check_admin(scope)  # live inputs are the users' data: admin address only
        await _samples(engine, scope, receive, send, parts[1:])
    else:
        raise NotFound(f"no endpoint {scope['path']}")


async def metrics(engine: Engine, send: Send) -> None:
    text = exposition.generate_latest(engine.registry)
    await respond(send, 200, text, exposition.CONTENT_TYPE_LATEST.encode())


def require_method(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"use {allowed}")


_require = require_method


async def _model(engine: Engine, send: Send, parts: list[str]) -> None:
    name = parts[0]
    repo = engine.repository
    versions = repo.versions_of(name)
    if not versions:
        raise NotFound(f"Request for unknown model: '{name}' is not found")
    if len(parts) >= 3 and parts[1] == "versions":
        version, rest = parts[2], parts[3:]
    elif len(parts) <= 2:
        version, rest = None, parts[1:]
    else:
        raise NotFound("no such model endpoint")
    if rest not in ([], ["ready"]):
        raise NotFound("no such model endpoint")
    live = repo.live.get(name, {})
    if rest == ["ready"]:
        ready = version in live if version is not None else bool(live)
        doc = {"name": name, "ready": ready}
        if version is not None:
            doc["version"] = version
        await respond_json(send, 200 if ready else 503, doc)
        return
    if version is None:
        route = engine.router.routes.get(name)
        if route is None:
            raise NotFound(f"Request for unknown model: '{name}' has no available versions")
        mv = route.choose()
    else:
        mv = repo.get(name, version)
    await respond_json(send, 200, mv.metadata(sorted(live, key=semver_key)))


async def _repository(engine: Engine, send: Send, parts: list[str], body: Any) -> None:
    if parts == ["index"]:
        rows = engine.repository.index()
        if isinstance(body, dict) and body.get("ready"):
            rows = [r for r in rows if r["state"] == "READY"]
        await respond_json(send, 200, rows)
        return
    if len(parts) != 3 or parts[0] != "models" or parts[2] not in ("load", "unload"):
        raise NotFound("no such repository endpoint")
    name, action = parts[1], parts[2]
    try:
        schema.check_name(name)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    params = schema.parse(schema.RepositoryBody, body, f"{action} body").parameters
    version, settings = params.version, params.settings
    if action == "load":
        loaded = await engine.load(name, version, settings, params.sha256)
        await respond_json(send, 200, {"name": name, "versions": loaded, "state": "READY"})
    else:
        unloaded = await engine.unload(name, version)
        await respond_json(send, 200, {"name": name, "versions": unloaded, "state": "UNLOADED"})


async def _samples(
    engine: Engine, scope: Scope, receive: Receive, send: Send, parts: list[str]
) -> None:
    """Live input samples (sampling.py): GET lists the reservoirs; GET NAME/VERSION reads
    one; PUT NAME/VERSION gives a loaded version its training statistics."""
    sampler, method = engine.sampler, scope["method"]
    if not parts:
        _require(method, "GET")
        rows = [
            {"name": n, "version": v, "rows": r.filled, "seen": r.seen, "problem": r.problem}
            for (n, v), r in sorted(sampler.reservoirs.items())
        ]
        await respond_json(send, 200, {"rate": sampler.rate, "versions": rows})
        return
    if len(parts) != 2:
        raise NotFound("no such samples endpoint (use /v2/samples/NAME/VERSION)")
    name, version = parts
    engine.repository.get(name, version)  # 404 unless loaded: bounds what is kept
    if method == "GET":
        doc = sampler.snapshot(name, version)
        await respond(send, 200, orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
    elif method == "PUT":
        body = json_body(await read_body(scope, receive, sampling.BASELINE_BODY_LIMIT))
        count = sampler.set_baseline(name, version, body)
        await respond_json(send, 200, {"name": name, "version": version, "features": count})
    else:
        raise MethodNotAllowed("use GET or PUT")
