"""The gateway's route table and the nginx configuration rendered from it (pure: values in,
text out; nginx.py runs it).

A route sends every request whose path is `path_prefix` or below it (element-wise, like the
Gateway API's PathPrefix: `/v2/models/a` matches `/v2/models/a/infer`, not `/v2/models/ab`)
to one of its backends, chosen by weight (nginx's smooth weighted round-robin: with one
worker process the split is exact, not sampled; a client whose requests follow a period that
shares a factor with the rotation's can alias with it), and optionally mirrors `mirror_percent` of
them to `mirror`, whose answers are discarded (the copy carries `X-Mlops-Mirrored: 1`).
A backend of weight 0 gets no new requests: that is how a backend is drained before it stops.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from mlops import errors

MAX_ROUTES = 64
MAX_BACKENDS = 16
MAX_WEIGHT = 1_000_000
MAX_PREFIX_CHARS = 256
# Paths the gateway answers itself (its generation probe); no route may claim them.
RESERVED_PREFIX = "/_gateway"
_PREFIX = re.compile(r"/[A-Za-z0-9._~/+-]*")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})")
# The engine's own limit on a request body (mlops.serving.config max_body_bytes).
MAX_BODY_BYTES = 64 << 20
WORKER_SHUTDOWN_S = 60  # an old worker finishes its requests for this long after a reload


@dataclass(frozen=True)
class Backend:
    """`url`: http://HOST:PORT of a server; `weight`: its share of the route (0: drained)."""

    url: str
    weight: int

    def __post_init__(self) -> None:
        address(self.url)
        if type(self.weight) is not int or not 0 <= self.weight <= MAX_WEIGHT:
            raise errors.ConfigError(
                f"gateway backend {self.url}: weight must be an integer in [0, {MAX_WEIGHT}], "
                f"not {self.weight!r}"
            )


@dataclass(frozen=True)
class Route:
    path_prefix: str
    backends: list[Backend] = field(default_factory=list)
    mirror: str | None = None
    mirror_percent: int = 0

    def __post_init__(self) -> None:
        prefix = self.path_prefix
        if (
            not isinstance(prefix, str)
            or len(prefix) > MAX_PREFIX_CHARS
            or not _PREFIX.fullmatch(prefix)
            or "//" in prefix
            or "/../" in prefix + "/"
            or "/./" in prefix + "/"
        ):
            raise errors.ConfigError(
                f"gateway route prefix {str(prefix)[:80]!r}: a path of letters, digits and "
                f"._~/+- starting with /, at most {MAX_PREFIX_CHARS} characters, no // . .."
            )
        if prefix.startswith(RESERVED_PREFIX):
            raise errors.ConfigError(f"gateway route prefix {prefix}: {RESERVED_PREFIX} is ours")
        if len(self.backends) > MAX_BACKENDS:
            raise errors.ConfigError(f"gateway route {prefix}: at most {MAX_BACKENDS} backends")
        urls = [b.url for b in self.backends]
        if len(set(urls)) != len(urls):
            raise errors.ConfigError(f"gateway route {prefix}: a backend is listed twice")
        if self.mirror is not None:
            address(self.mirror)
        if type(self.mirror_percent) is not int or not 0 <= self.mirror_percent <= 100:
            raise errors.ConfigError(
                f"gateway route {prefix}: mirror_percent must be an integer in [0, 100]"
            )


def address(url: str) -> str:
    """HOST:PORT of an http://HOST:PORT URL (nothing else: no path, query or credentials)."""
    if not isinstance(url, str) or len(url) > 300:
        raise errors.ConfigError(f"gateway backend {str(url)[:80]!r}: not an http://HOST:PORT")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        port = None
        parts = urlsplit("")
    host = parts.hostname or ""
    if (
        parts.scheme != "http"
        or port is None
        or not 0 < port < 65536
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username is not None
        or not _HOST.fullmatch(host)
    ):
        raise errors.ConfigError(f"gateway backend {url[:80]!r}: not an http://HOST:PORT")
    return f"{host}:{port}"


def check_table(routes: Sequence[Route]) -> None:
    if len(routes) > MAX_ROUTES:
        raise errors.ConfigError(f"gateway: at most {MAX_ROUTES} routes, not {len(routes)}")
    prefixes = [r.path_prefix.rstrip("/") for r in routes]
    if len(set(prefixes)) != len(prefixes):
        raise errors.ConfigError("gateway: two routes have the same path prefix")


def render(
    routes: Sequence[Route],
    *,
    port: int,
    prefix: str,
    host: str = "127.0.0.1",
    generation: int,
    user: str | None,
) -> str:
    """nginx.conf for `routes` listening on `host`:`port`, every file under `prefix`."""
    check_table(routes)
    upstreams: list[str] = []
    maps: list[str] = []
    locations: list[str] = []
    for index, route in enumerate(routes):
        live = [b for b in route.backends if b.weight > 0]
        name = f"route{index}"
        if live:
            servers = "".join(
                f"        server {address(b.url)} weight={b.weight} max_fails=0;\n" for b in live
            )
            upstreams.append(
                f"    upstream {name} {{\n{servers}"
                "        keepalive 32;\n"
                # Below the engine's 5 s, so nginx never reuses a connection the engine closed.
                "        keepalive_timeout 2s;\n"
                "    }\n"
            )
            target = f"        proxy_pass http://{name};\n"
        else:
            target = "        return 503 'no backend has weight on this route\\n';\n"
        mirror = ""
        if route.mirror is not None and route.mirror_percent > 0:
            upstreams.append(
                f"    upstream {name}_mirror {{\n"
                f"        server {address(route.mirror)} max_fails=0;\n"
                "        keepalive 16;\n"
                "        keepalive_timeout 2s;\n"
                "    }\n"
            )
            # A percentage of requests: the mirror subrequest runs for every request, and
            # answers at once (204, nothing sent) unless this request was picked.
            maps.append(
                f'    split_clients "${{request_id}}" ${name}_mirrored {{\n'
                f"        {route.mirror_percent}% 1;\n"
                '        * "";\n'
                "    }\n"
                if route.mirror_percent < 100
                else f'    map "" ${name}_mirrored {{ default 1; }}\n'
            )
            mirror = f"        mirror /_gateway/mirror/{index};\n"
            locations.append(
                f"    location = /_gateway/mirror/{index} {{\n"
                "        internal;\n"
                f'        if (${name}_mirrored = "") {{ return 204; }}\n'
                "        proxy_connect_timeout 1s;\n"
                "        proxy_read_timeout 10s;\n"
                "        proxy_next_upstream off;\n"
                '        proxy_set_header X-Mlops-Mirrored "1";\n'
                f"        proxy_pass http://{name}_mirror$request_uri;\n"
                "    }\n"
            )
        # Element-wise, as the Gateway API's PathPrefix: /v2/models/a matches /v2/models/a
        # and /v2/models/a/infer, never /v2/models/ab.
        base = route.path_prefix.rstrip("/")
        matches = [f"= {base}", f"{base}/"] if base else ["/"]
        for match in matches:
            locations.append(f"    location {match} {{\n{mirror}{target}    }}\n")
    located = "".join("    " + line + "\n" for block in locations for line in block.splitlines())
    user_line = f"user {user};\n" if user else ""
    default = (
        ""
        if any(r.path_prefix == "/" for r in routes)
        else "        location / {\n"
        "            return 404 'no gateway route for this path\\n';\n"
        "        }\n"
    )
    return f"""\
# Rendered by mlops.providers.gateway (generation {generation}); rewritten on every change.
{user_line}worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
# Old workers finish their requests after a reload, for this long at most.
worker_shutdown_timeout {WORKER_SHUTDOWN_S}s;

events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {prefix}/temp/client_body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;
    client_max_body_size {MAX_BODY_BYTES};
    client_body_buffer_size 1m;
    # One request per client connection: a reload closes the old workers' idle keep-alive
    # connections, and a request sent on one at that moment would be lost. New connections
    # wait in the listening socket's queue, which the new workers share.
    keepalive_timeout 0;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_connect_timeout 2s;
    proxy_read_timeout 60s;
    proxy_send_timeout 60s;
    # Another backend only when this one refused the connection or did not accept it in
    # time: nginx never resends a POST that reached a backend (no `non_idempotent`).
    proxy_next_upstream error timeout;
    proxy_next_upstream_tries 3;

{"".join(upstreams)}{"".join(maps)}
    server {{
        listen {host}:{port};
        location = /_gateway/generation {{
            default_type text/plain;
            return 200 '{generation}\\n';
        }}
{default}{located}\
    }}
}}
"""
