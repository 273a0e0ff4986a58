"""A pending version whose owner on this host has exited but is not reaped yet (a zombie) is a
leftover: the next registration of that semver replaces it instead of waiting forever."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.providers.mlflow.registry import MlflowRegistry
from tests.registry import support
from tests.registry.test_contract import MODEL, OTHER, Name, raw_versions


@pytest.fixture
def zombie_pid() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    stat = Path(f"/proc/{child.pid}/stat")
    for _ in range(500):  # bounded: the child exits at once, but is not waited for
        if stat.read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            break
        time.sleep(0.01)
    else:
        pytest.fail("the child process did not become a zombie")
    yield child.pid
    child.wait()


def test_zombie_owner_of_a_pending_version_is_stale(
    registry: MlflowRegistry, monkeypatch: pytest.MonkeyPatch, name: Name, zombie_pid: int
) -> None:
    from mlops import errors
    from mlops.providers.mlflow import tags as mlflow_tags

    model = name("zombie")
    registry.register(support.deployment(model, "1.0.0"), MODEL, None)
    real = registry.session.call
    owner = f"{mlflow_tags.PENDING}{socket.gethostname()}:{zombie_pid}"

    def call(what: str, method: str, *args: Any, **kwargs: Any) -> Any:
        # A rival version created by the (now dead) child: same semver, owned by its pid.
        if what == "create version":
            rival = {**kwargs["tags"], mlflow_tags.STATE: owner}
            real(what, method, *args, **{**kwargs, "tags": rival})
            raise errors.TransientError("stop after the rival exists")
        return real(what, method, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(registry.session, "call", call)
        with pytest.raises(errors.TransientError):
            registry.register(support.deployment(model, "1.1.0"), OTHER, None)
    states = [mlflow_tags.tags_of(v).get(mlflow_tags.STATE) for v in raw_versions(registry, model)]
    assert owner in states
    again = registry.register(support.deployment(model, "1.1.0"), OTHER, None)
    assert registry.get_version(model, "1.1.0") == again
    left = [mlflow_tags.tags_of(v).get(mlflow_tags.STATE) for v in raw_versions(registry, model)]
    assert owner not in left
