"""Text `status` shows fewer gate rounds than the JSON document: it says so, and where the
rest is (issue 10)."""

from __future__ import annotations

from typing import Any

from mlops.apply import status


def document(rounds: int) -> dict[str, Any]:
    gates = [
        {
            "at": f"2026-01-01T00:00:{i:02d}Z",
            "weight": 25,
            "decision": "continue",
            "measurements": [
                {"gate": "error_rate", "value": 0.0, "verdict": "passed", "requests": 40}
            ],
        }
        for i in range(rounds)
    ]
    rollout = {
        "run_id": "r1",
        "status": "in_progress",
        "step": {"weight": 25, "ends_at": "2026-01-01T00:01:00Z"},
        "reason": None,
        "gates": gates,
    }
    model = {
        "stable": "1.0.0",
        "canary": "1.1.0",
        "replicas": 1,
        "replicas_alive": 1,
        "generation": 3,
        "versions": [],
        "shadow": None,
        "rollout": rollout,
    }
    return {"lock": None, "runtime_reachable": True, "models": {"fraud": model}}


def test_text_says_how_many_rounds_it_shows_of_how_many() -> None:
    text = status.render_text(document(12))
    rows = [line for line in text.splitlines() if line.strip().startswith("2026-")]
    assert len(rows) == status.TEXT_ROUNDS < 12
    assert f"last {status.TEXT_ROUNDS} of 12 shown" in text
    assert "mlops status fraud --format json" in text
    # The newest rounds are the ones shown.
    assert rows[-1].strip().startswith("2026-01-01T00:00:11Z")


def test_no_note_when_every_round_is_shown() -> None:
    text = status.render_text(document(3))
    assert len([line for line in text.splitlines() if line.strip().startswith("2026-")]) == 3
    assert " shown" not in text
