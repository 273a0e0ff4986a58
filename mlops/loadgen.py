"""A bounded, paced load generator for the demo, the end-to-end tests and the benchmarks.

Sends V2 infer requests at a fixed rate for a fixed time (it always stops by itself) and
counts outcomes per served version (the `x-mlops-version` header). A request that does not
get a 200 is a failure; the summary says how many and why.

  python -m mlops.loadgen --url http://127.0.0.1:8480 --model fraud-scorer --rate 200 --duration 30
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

MAX_DURATION_S = 3600.0
MAX_RATE = 5000.0


@dataclass
class Summary:
    sent: int = 0
    ok: int = 0
    failed: int = 0
    by_version: Counter[str] = field(default_factory=Counter)
    by_code: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, code: str, version: str | None, error: str | None = None) -> None:
        with self.lock:
            self.sent += 1
            self.by_code[code] += 1
            if code == "200":
                self.ok += 1
                self.by_version[version or "?"] += 1
            else:
                self.failed += 1
                self.errors[error or code] += 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "rate": round(self.sent / self.elapsed, 1) if self.elapsed else 0.0,
            "elapsed_s": round(self.elapsed, 2),
            "by_version": dict(self.by_version),
            "by_code": dict(self.by_code),
            "errors": dict(self.errors.most_common(5)),
        }


def body(features: int, rows: int, poison: bool, seed: int) -> bytes:
    # Values in the range the example model was trained on; a poisoned row carries 100.0,
    # far outside it (the erroring demo model fails on such rows).
    values = [((seed * 7919 + i * 104729) % 2000) / 500.0 - 2.0 for i in range(features * rows)]
    if poison:
        values[0] = 100.0
    tensor = {"name": "input", "shape": [rows, features], "datatype": "FP32", "data": values}
    return json.dumps({"inputs": [tensor]}).encode()


def run(
    url: str,
    model: str,
    *,
    rate: float,
    duration: float,
    features: int = 30,
    workers: int = 16,
    poison_every: int = 0,
    timeout: float = 10.0,
    stop: threading.Event | None = None,
    summary: Summary | None = None,
) -> Summary:
    """Send `rate` requests/s for `duration` s (or until `stop` is set). A `summary` given by
    the caller is filled as answers arrive, so another thread can wait on the progress."""
    import httpx

    if not 0 < rate <= MAX_RATE or not 0 < duration <= MAX_DURATION_S:
        raise ValueError(f"rate must be in (0, {MAX_RATE}] and duration in (0, {MAX_DURATION_S}]")
    summary = summary if summary is not None else Summary()
    stop = stop or threading.Event()
    total = int(rate * duration)
    start = time.monotonic()
    counter = iter(range(total))
    counter_lock = threading.Lock()
    path = f"{url.rstrip('/')}/v2/models/{model}/infer"

    def worker() -> None:
        with httpx.Client(timeout=timeout) as client:
            while not stop.is_set():
                with counter_lock:
                    index = next(counter, None)
                if index is None:
                    return
                # Open-loop pacing: request i goes at start + i/rate, late or not.
                delay = start + index / rate - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return
                poison = poison_every > 0 and index % poison_every == 0
                payload = body(features, 1, poison, index)
                try:
                    reply = client.post(
                        path, content=payload, headers={"content-type": "application/json"}
                    )
                    detail = None if reply.status_code == 200 else reply.text[:120]
                    summary.record(
                        str(reply.status_code), reply.headers.get("x-mlops-version"), detail
                    )
                except httpx.HTTPError as exc:
                    summary.record("error", None, f"{type(exc).__name__}: {exc}"[:120])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(workers, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + timeout + 5)
    summary.elapsed = time.monotonic() - start
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bounded, paced V2 load for an mlops engine.")
    parser.add_argument("--url", default="http://127.0.0.1:8480")
    parser.add_argument("--model", required=True)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds (it stops itself)")
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument(
        "--poison-every", type=int, default=0, help="every Nth request carries an out-of-range row"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    args = parser.parse_args(argv)
    stop = threading.Event()
    # A demo script stops the load early with SIGTERM: finish cleanly and print the summary.
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        summary = run(
            args.url,
            args.model,
            rate=args.rate,
            duration=args.duration,
            features=args.features,
            workers=args.workers,
            poison_every=args.poison_every,
            stop=stop,
        )
    except ValueError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    result = summary.to_dict()
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"loadgen: {result['sent']} requests in {result['elapsed_s']}s "
            f"({result['rate']}/s): {result['ok']} ok, {result['failed']} failed; "
            f"served by {result['by_version']}"
            + (f"; errors {result['errors']}" if result["errors"] else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
