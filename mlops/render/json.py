"""JSON view: the plan itself, as documented in docs/plan-json.md. Stable key order."""

from __future__ import annotations

import json

from mlops.plan import types as t


class JsonView:
    def render(self, plan: t.Plan) -> str:
        return json.dumps(plan.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
