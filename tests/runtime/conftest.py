"""Fixtures for the runtime contract tests: a workspace on free ports and a real engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops.providers.engine.runtime import LocalRuntime
from mlops.workspace import Workspace
from tests.runtime import support


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return support.make_workspace(tmp_path)


@pytest.fixture
def runtime(workspace: Workspace) -> Iterator[LocalRuntime]:
    with support.running(workspace, replicas=2) as rt:
        yield rt
