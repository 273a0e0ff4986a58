"""Fixtures of the `mlops watch` tests: the in-process CLI runner (as tests/drift)."""

from __future__ import annotations

import pytest

from tests import support
from tests.support import Runner


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Runner:
    return support.cli_runner(capsys)
