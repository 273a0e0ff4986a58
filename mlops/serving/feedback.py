"""Which version served which request id, so business outcomes can be attributed later."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from mlops.serving.errors import BadRequest, NotFound
from mlops.serving.stats import StatsBook, VersionStats


class FeedbackBook:
    """A bounded memory of recent request ids; the oldest are forgotten first."""

    def __init__(self, stats: StatsBook, capacity: int = 100_000) -> None:
        self._stats = stats
        self._capacity = capacity
        self._served: OrderedDict[str, VersionStats] = OrderedDict()

    def remember(self, request_id: str, stats: VersionStats) -> None:
        served = self._served
        served[request_id] = stats
        if len(served) > self._capacity:
            served.popitem(last=False)

    def record(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise BadRequest("feedback must be a JSON object {request_id, value}")
        request_id, value = body.get("request_id"), body.get("value", 1.0)
        if not isinstance(request_id, str):
            raise BadRequest("feedback.request_id must be a string")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise BadRequest("feedback.value must be a number")
        stats = self._served.get(request_id)
        model, version = body.get("model"), body.get("version")
        if stats is None and isinstance(model, str) and isinstance(version, str):
            # With replicas the request may have been served by another worker; the client
            # can still attribute it through the x-mlops-version header it received.
            stats = self._stats.versions.get((model, version))
        if stats is None:
            raise NotFound(f"unknown request id '{request_id}' (too old, or another replica)")
        stats.feedback += 1
        stats.feedback_value += float(value)
        return {"request_id": request_id, "recorded": True}
