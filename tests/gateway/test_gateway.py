"""The gateway alone: Debian's nginx in front of small real HTTP servers on loopback.

Weights are observed over many requests, mirrored copies arrive at the mirror, a reload
under steady keep-alive load loses no request, a drained backend can be stopped with nothing
failing, and a backend that refuses connections is skipped (the request never reached it)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from mlops import errors
from mlops.providers import gateway
from mlops.providers.gateway import routes as routes_mod

PREFIX = "/v2/models/m"


class Backend:
    """An HTTP/1.1 keep-alive server that answers with its name and counts what it got."""

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name = name
        self.hits: Counter[str] = Counter()  # path -> requests
        self.bodies: list[bytes] = []
        self.mirrored = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with owner.lock:
                    owner.hits[self.path] += 1
                    owner.bodies.append(body)
                    owner.mirrored += self.headers.get("x-mlops-mirrored") == "1"
                if delay:
                    time.sleep(delay)
                payload = owner.name.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(payload)))
                self.send_header("x-backend", owner.name)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass

        ThreadingHTTPServer.request_queue_size = 128
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.hits.values())

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[gateway.Gateway]:
    try:
        gateway.install()
    except errors.ConfigError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the gateway tests: {exc}")
        pytest.skip(f"nginx cannot be installed here: {exc}")
    running = gateway.Gateway(tmp_path_factory.mktemp("gateway"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    made = [Backend(name) for name in ("a", "b", "c")]
    try:
        yield made
    finally:
        for backend in made:
            backend.stop()


def route(
    weights: dict[Backend, int], mirror: Backend | None = None, percent: int = 0
) -> list[gateway.Route]:
    return [
        gateway.Route(
            PREFIX,
            [gateway.Backend(b.url, w) for b, w in weights.items()],
            mirror.url if mirror else None,
            percent,
        )
    ]


def post_many(url: str, count: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    with httpx.Client(timeout=10) as http:
        for i in range(count):
            reply = http.post(f"{url}{PREFIX}/infer", content=f"request {i}".encode())
            assert reply.status_code == 200, reply.text
            seen[reply.headers["x-backend"]] += 1
    return seen


@pytest.mark.slow
def test_weights_are_observed_within_tolerance(
    gw: gateway.Gateway, backends: list[Backend]
) -> None:
    a, b, c = backends
    gw.configure(route({a: 90, b: 5, c: 5}))
    seen = post_many(gw.url, 1000)
    # Smooth weighted round-robin in one worker: exact up to one cycle of 100.
    assert abs(seen["a"] - 900) <= 10 and abs(seen["b"] - 50) <= 5 and abs(seen["c"] - 50) <= 5
    assert a.hits[f"{PREFIX}/infer"] == seen["a"]

    gw.configure(route({a: 0, b: 1, c: 3}))  # a drained: nothing more reaches it
    before = a.total
    seen = post_many(gw.url, 400)
    assert seen == Counter({"c": 300, "b": 100}) and a.total == before


@pytest.mark.slow
def test_path_prefixes_match_element_wise(gw: gateway.Gateway, backends: list[Backend]) -> None:
    a, b, _ = backends
    gw.configure([
        gateway.Route("/v2/models/m", [gateway.Backend(a.url, 1)]),
        gateway.Route("/v2/models/mm/", [gateway.Backend(b.url, 1)]),
    ])  # fmt: skip
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{gw.url}/v2/models/m").headers["x-backend"] == "a"
        assert http.post(f"{gw.url}/v2/models/m/infer").headers["x-backend"] == "a"
        assert http.post(f"{gw.url}/v2/models/mm/infer").headers["x-backend"] == "b"
        assert http.post(f"{gw.url}/v2/models/mmm/infer").status_code == 404
        assert http.get(f"{gw.url}/_gateway/generation").text.strip() == str(gw.generation)


@pytest.mark.slow
def test_mirror_copies_arrive(gw: gateway.Gateway, backends: list[Backend]) -> None:
    a, b, shadow = backends
    gw.configure(route({a: 1, b: 1}, mirror=shadow, percent=100))
    seen = post_many(gw.url, 200)
    assert set(seen) == {"a", "b"} and sum(seen.values()) == 200
    deadline = time.monotonic() + 10
    while shadow.total < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    # Every request copied once, to the same path with the same body, marked as a copy.
    assert shadow.hits == Counter({f"{PREFIX}/infer": 200}) and shadow.mirrored == 200
    assert sorted(shadow.bodies) == sorted(a.bodies + b.bodies)

    gw.configure(route({a: 1}, mirror=shadow, percent=25))
    before = shadow.total
    post_many(gw.url, 800)
    time.sleep(0.5)
    copied = shadow.total - before
    assert 120 <= copied <= 280, copied  # 25% of 800 = 200, sampled by request id


@pytest.mark.slow
def test_reload_under_load_loses_nothing_and_drained_backend_stops_cleanly(
    gw: gateway.Gateway, tmp_path: Path
) -> None:
    slow = [Backend(name, delay=0.02) for name in ("a", "b")]
    a, b = slow
    gw.configure(route({a: 50, b: 50}))
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=10) as http:  # keep-alive connections across reloads
            while not stop.is_set():
                try:
                    reply = http.post(f"{gw.url}{PREFIX}/infer", content=b"x" * 512)
                    outcome = str(reply.status_code)
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                with lock:
                    outcomes[outcome] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for weight in (90, 10, 70, 30, 50, 100, 0, 60, 40, 50):
            gw.configure(route({a: weight, b: 100 - weight}))
        # Drain b, then stop it: configure returned, so nothing is in flight to b.
        gw.configure(route({a: 100, b: 0}))
        served_b = b.total
        b.stop()
        time.sleep(1.0)
        assert b.total == served_b
    finally:
        stop.set()
        for thread in threads:
            thread.join(15)
        a.stop()
    assert set(outcomes) == {"200"}, outcomes
    assert outcomes["200"] > 200


@pytest.mark.slow
def test_refused_connection_goes_to_another_backend(
    gw: gateway.Gateway, backends: list[Backend]
) -> None:
    a, b, _ = backends
    b.stop()  # refuses connections: the POST never reached it, so it may go elsewhere
    gw.configure(route({a: 1, b: 1}))
    assert post_many(gw.url, 50) == Counter({"a": 50})


@pytest.mark.slow
def test_restart_finds_the_running_gateway_and_bad_tables_change_nothing(
    gw: gateway.Gateway, backends: list[Backend]
) -> None:
    a = backends[0]
    gw.configure(route({a: 1}))
    again = gateway.Gateway(gw.state_dir)
    assert again.start() == gw.url and again.generation == gw.generation
    generation = gw.generation
    with pytest.raises(errors.ConfigError, match="same path prefix"):
        gw.configure([gateway.Route("/x", []), gateway.Route("/x/", [])])
    assert gw.generation == generation and post_many(gw.url, 3) == Counter({"a": 3})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: gateway.Backend("https://127.0.0.1:1", 1), "not an http://HOST:PORT"),
        (lambda: gateway.Backend("http://127.0.0.1", 1), "not an http://HOST:PORT"),
        (lambda: gateway.Backend("http://u:p@127.0.0.1:80", 1), "not an http://HOST:PORT"),
        (lambda: gateway.Backend("http://127.0.0.1:80/x", 1), "not an http://HOST:PORT"),
        (lambda: gateway.Backend("http://127.0.0.1:99999", 1), "not an http://HOST:PORT"),
        (lambda: gateway.Backend("http://a b:80", 1), "not an http://HOST:PORT"),
        (lambda: gateway.Backend("http://h:80", -1), "weight must be"),
        (lambda: gateway.Backend("http://h:80", 10**7), "weight must be"),
        (lambda: gateway.Route("v2", []), "prefix"),
        (lambda: gateway.Route("/a;b", []), "prefix"),
        (lambda: gateway.Route("/a/../b", []), "prefix"),
        (lambda: gateway.Route("/" + "a" * 300, []), "prefix"),
        (lambda: gateway.Route("/_gateway/x", []), "is ours"),
        (lambda: gateway.Route("/a", [gateway.Backend("http://h:1", 1)] * 2), "twice"),
        (lambda: gateway.Route("/a", [], "http://h:1", 101), "mirror_percent"),
        (lambda: gateway.Route("/a", [], "ftp://h:1", 5), "not an http://HOST:PORT"),
        (lambda: routes_mod.check_table([gateway.Route(f"/r{i}") for i in range(65)]), "at most"),
    ],
)
def test_hostile_route_tables_are_refused_in_one_line(make: object, message: str) -> None:
    with pytest.raises(errors.ConfigError, match=message) as caught:
        make()  # type: ignore[operator]
    assert "\n" not in str(caught.value)


def test_rendered_configuration_splits_mirrors_and_drains() -> None:
    text = routes_mod.render(
        [
            gateway.Route(
                "/v2/models/m",
                [gateway.Backend("http://127.0.0.1:5001", 95), gateway.Backend("http://h:2", 0)],
                "http://127.0.0.1:5003",
                10,
            ),
            gateway.Route("/empty", []),
        ],
        port=8080,
        prefix="/tmp/gw",
        generation=7,
        user=None,
    )
    assert "server 127.0.0.1:5001 weight=95" in text and "h:2" not in text  # drained
    assert "10% 1;" in text and "mirror /_gateway/mirror/0;" in text
    assert "location = /v2/models/m {" in text and "location /v2/models/m/ {" in text
    assert "return 503" in text and "return 200 '7\\n'" in text and "user " not in text


def test_bad_listen_addresses_and_a_damaged_record_are_one_line_errors(tmp_path: Path) -> None:
    for kwargs, message in (
        ({"host": "::1"}, "IPv4"),
        ({"host": "not an address"}, "IPv4"),
        ({"port": 70000}, "not in"),
    ):
        with pytest.raises(errors.ConfigError, match=message) as caught:
            gateway.Gateway(tmp_path / "gw").start(**kwargs)
        assert "\n" not in str(caught.value)
    record = tmp_path / "gw" / "gateway.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    for text in ("{", '{"pid": "x"}', '{"pid": 1, "create_time": 0, "port": 1, "generation": 1,'
                 ' "host": "nowhere"}'):  # fmt: skip
        record.write_text(text)
        with pytest.raises(errors.ConfigError, match="unreadable") as caught:
            gateway.Gateway(tmp_path / "gw").running()
        assert "\n" not in str(caught.value)
