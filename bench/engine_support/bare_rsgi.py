"""The bare handler on granian's RSGI interface (started by `bare.py --server granian`)."""

from __future__ import annotations

import os
from typing import Any

from bare import BareApp  # type: ignore[import-not-found]  # engine_support is on sys.path

_APP = BareApp(os.environ["BARE_MODEL"], os.environ["BARE_NAME"])
_JSON = [("content-type", "application/json")]


async def app(scope: Any, proto: Any) -> None:
    """RSGI: read the whole body, answer in one call."""
    if scope.path == _APP.infer_path:
        try:
            payload = _APP.infer(await proto())
        except (KeyError, TypeError, ValueError) as error:
            proto.response_bytes(400, _JSON, repr(error).encode())
            return
        proto.response_bytes(200, _JSON, payload)
    elif scope.path.startswith("/v2/health/"):
        proto.response_bytes(200, _JSON, b"{}")
    else:
        proto.response_bytes(404, _JSON, b'{"error": "not found"}')
