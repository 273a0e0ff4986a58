"""What mlops.api hands the commands: typed results, the error that ends a run, the views.
(That commands import nothing else of the controller is a contract of .importlinter.)"""

from __future__ import annotations

import io
from pathlib import Path

from mlops import api, errors
from mlops.apply import hooks
from mlops.apply.executor import Outcome, Result


def test_an_applied_run_ends_without_an_error() -> None:
    result = Result(run_id="r1", models={"a": Outcome.APPLIED})
    assert api.outcome_error(result) is None


def test_rolled_back_and_aborted_models_exit_3_by_name() -> None:
    result = Result(
        run_id="r1",
        outcome=Outcome.ROLLED_BACK,
        models={"a": Outcome.ROLLED_BACK, "b": Outcome.ABORTED, "c": Outcome.APPLIED},
        reasons={"a": "error_rate 0.2 > 0.01", "b": "metrics backend failed"},
    )
    failure = api.outcome_error(result)
    assert isinstance(failure, errors.RolledBackError) and failure.exit_code == 3
    assert str(failure) == ("rolled back: a: error_rate 0.2 > 0.01; b: metrics backend failed")


def test_paused_models_exit_4_with_what_to_do() -> None:
    result = Result(
        run_id="r1",
        outcome=Outcome.PAUSED,
        models={"a": Outcome.PAUSED, "b": Outcome.APPLIED},
        reasons={"a": "too few requests"},
    )
    failure = api.outcome_error(result)
    assert isinstance(failure, errors.PausedError) and failure.exit_code == 4
    assert str(failure) == (
        "paused: a: too few requests (mlops promote NAME resumes, mlops rollback NAME undoes)"
    )


def test_the_progress_view_is_a_listener_writing_to_its_stream() -> None:
    stream = io.StringIO()
    view = api.progress_view(stream)
    assert isinstance(view, hooks.Hook)
    view.on_decision("a", "rollback", "ops")
    assert "rollback" in stream.getvalue()


def test_validate_collects_problems_instead_of_raising(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "bad.yaml").write_text("kind: ModelDeployment\nmetadata: {}\n")
    check = api.validate(workspace=tmp_path)
    assert check.root == tmp_path.resolve()
    assert check.loaded == [] and check.problems and check.spec_digest is None
    assert all(problem.file.endswith("bad.yaml") for problem in check.problems)
