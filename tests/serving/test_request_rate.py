"""The engine's per-model request rate: an exponentially weighted average advanced from the
request counters when read (explicit clock values: no sleeping, no timed assertions)."""

from __future__ import annotations

import math

from mlops.serving import stats


def _served(book: stats.StatsBook, model: str, version: str, n: int, code: str = "200") -> None:
    book.get(model, version).requests[code] += n


def test_steady_traffic_converges_to_its_rate() -> None:
    book = stats.StatsBook()
    t = book.started
    rate = 0.0
    for _ in range(120):  # ten minutes of 5-second scrapes at 20 requests/s
        t += 5.0
        _served(book, "clf", "1.0.0", 100)
        rate = book.request_rates(t)["clf"]
    assert math.isclose(rate, 20.0, rel_tol=1e-3)


def test_versions_and_status_codes_all_count_for_the_model() -> None:
    book = stats.StatsBook()
    _served(book, "clf", "1.0.0", 30)
    _served(book, "clf", "1.1.0", 10, "503")
    _served(book, "other", "1.0.0", 4)
    rates = book.request_rates(book.started + 60.0)
    expected = 1.0 - math.exp(-1.0)  # one window of 40 requests/60 s, weighed once
    assert math.isclose(rates["clf"], 40 / 60 * expected)
    assert math.isclose(rates["other"], 4 / 60 * expected)


def test_silence_decays_the_rate() -> None:
    book = stats.StatsBook()
    _served(book, "clf", "1.0.0", 600)
    first = book.request_rates(book.started + 60.0)["clf"]
    later = book.request_rates(book.started + 120.0)["clf"]
    assert math.isclose(later, first * math.exp(-1.0))
    assert book.request_rates(book.started + 6000.0)["clf"] < 1e-6


def test_reads_close_together_count_the_requests_between_them() -> None:
    book = stats.StatsBook()
    _served(book, "clf", "1.0.0", 1)
    at = book.started + 10.0
    before = book.request_rates(at)["clf"]
    assert book.request_rates(at)["clf"] == before  # no time passed: nothing to weigh
    _served(book, "clf", "1.0.0", 6)
    after = book.request_rates(at + 1e-9)["clf"]
    # In the limit each request adds 1/window requests per second.
    assert math.isclose(after - before, 6 / stats.RATE_WINDOW_SECONDS, rel_tol=1e-3)
