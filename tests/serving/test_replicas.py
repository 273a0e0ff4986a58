"""`mlops serve` as a real process: replicas, admin ports, state files, clean shutdown."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.serving import fixtures
from tests.serving.conftest import free_port, infer_body

# Not `python -m mlops.cli`: that runs cli.py as __main__, a second copy of the module.
MLOPS = [sys.executable, "-c", "from mlops.cli import main; main()"]


def _wait(predicate: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the engine")


def _ready(url: str) -> bool:
    return httpx.get(url + "/v2/health/ready").status_code == 200


@pytest.mark.slow
def test_two_replicas_share_a_port_and_report_their_generation(tmp_path: Path) -> None:
    repo, state = tmp_path / "repo", tmp_path / "state"
    fixtures.write_version(
        repo, "m", "1.0.0", fixtures.classifier_bytes(), fixtures.classifier_settings()
    )
    fixtures.write_version(
        repo, "m", "1.1.0", fixtures.classifier_bytes(1), fixtures.classifier_settings()
    )
    port, admin = free_port(), free_port()
    while admin + 1 == port or not _free(admin + 1):
        admin = free_port()
    command = [
        *MLOPS, "serve", "--repository", str(repo),
        "--port", str(port), "--admin-port", str(admin), "--replicas", "2",
        "--state-dir", str(state),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    try:
        files = [state / "worker-0.json", state / "worker-1.json"]
        _wait(lambda: all(f.exists() for f in files))
        workers = [json.loads(f.read_text()) for f in files]
        assert [w["index"] for w in workers] == [0, 1]
        assert {w["admin_url"] for w in workers} == {
            f"http://127.0.0.1:{admin}",
            f"http://127.0.0.1:{admin + 1}",
        }
        for w in workers:
            _wait(functools.partial(_ready, w["admin_url"]))
            table = {"weights": {"1.0.0": 50, "1.1.0": 50}, "generation": 41 + w["index"]}
            assert httpx.put(w["admin_url"] + "/v2/routing/m", json=table).status_code == 200
        generations = [
            httpx.get(w["admin_url"] + "/v2/routing").json()["generation"] for w in workers
        ]
        assert generations == [41, 42]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            codes = {c.post("/v2/models/m/infer", json=infer_body()).status_code for _ in range(20)}
        assert codes == {200}
        assert len({w["pid"] for w in workers}) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert not any(f.exists() for f in files)


@pytest.mark.slow
def test_a_busy_port_is_one_line_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run(
            [
                *MLOPS,
                "serve",
                "--repository",
                str(tmp_path),
                "--port",
                str(port),
                "--state-dir",
                str(tmp_path / "s"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "Traceback" not in result.stderr


def _free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_serve_help_has_an_example_and_mlops_help_stays_light() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from mlops.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = [m for m in ('onnxruntime', 'uvicorn', 'mlops.serving') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "r = CliRunner().invoke(cli, ['serve', '--help'])\n"
        "assert 'Example' in r.output and 'mlops serve --repository' in r.output, r.output\n"
        "assert 'onnxruntime' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


@pytest.mark.slow
def test_a_restarted_worker_comes_back_with_its_versions_and_table(tmp_path: Path) -> None:
    repo, state = tmp_path / "repo", tmp_path / "state"
    for i, version in enumerate(("1.0.0", "1.1.0")):
        fixtures.write_version(
            repo, "m", version, fixtures.classifier_bytes(i), fixtures.classifier_settings()
        )
    port, admin = free_port(), free_port()
    while admin + 1 == port or not _free(admin + 1):
        admin = free_port()
    # Two replicas: with one, the worker runs inside the command and has no supervisor.
    command = [
        *MLOPS, "serve", "--repository", str(repo), "--port", str(port), "--replicas", "2",
        "--admin-port", str(admin), "--state-dir", str(state), "--no-load-all",
    ]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{admin}"
    table = {"weights": {"1.0.0": 100, "1.1.0": 0}, "generation": 9}
    try:
        _wait(lambda: all((state / f"worker-{i}.json").exists() for i in (0, 1)))
        for admin_url in (url, f"http://127.0.0.1:{admin + 1}"):
            for version in ("1.0.0", "1.1.0"):
                load = {"parameters": {"version": version}}
                response = httpx.post(
                    f"{admin_url}/v2/repository/models/m/load", json=load, timeout=60
                )
                assert response.is_success, response.text
            assert httpx.put(f"{admin_url}/v2/routing/m", json=table).status_code == 200
        old_pid = json.loads((state / "worker-0.json").read_text())["pid"]
        os.kill(old_pid, signal.SIGKILL)

        def restarted() -> bool:
            doc = json.loads((state / "worker-0.json").read_text())
            ready = httpx.get(url + "/v2/health/ready").status_code == 200
            return bool(doc["pid"] != old_pid and ready)

        _wait(restarted)
        routing = httpx.get(url + "/v2/routing").json()["models"]["m"]
        assert routing["generation"] == 9 and routing["weights"] == table["weights"]
        index = httpx.post(url + "/v2/repository/index", json={}).json()
        assert {(e["version"], e["state"]) for e in index} == {
            ("1.0.0", "READY"),
            ("1.1.0", "READY"),
        }
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            served = {
                c.post("/v2/models/m/infer", json=infer_body()).headers["x-mlops-version"]
                for _ in range(30)
            }
        assert served == {"1.0.0"}  # never the unweighted canary
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_load_all_still_loads_every_version_on_disk(tmp_path: Path) -> None:
    # The remembered set (from a controller's earlier loads) must not hide versions that
    # were added to the repository since: --load-all means everything on disk.
    repo, state = tmp_path / "repo", tmp_path / "state"
    for i, version in enumerate(("1.0.0", "1.1.0")):
        fixtures.write_version(
            repo, "m", version, fixtures.classifier_bytes(i), fixtures.classifier_settings()
        )
    state.mkdir()
    (state / "loaded-0.json").write_text(
        json.dumps([{"name": "m", "version": "1.0.0", "settings": None}])
    )
    port, admin = free_port(), free_port()
    command = [
        *MLOPS, "serve", "--repository", str(repo), "--port", str(port),
        "--admin-port", str(admin), "--state-dir", str(state),
    ]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{admin}"
    try:
        _wait(lambda: httpx.get(url + "/v2/health/ready").status_code == 200)
        index = httpx.post(url + "/v2/repository/index", json={}).json()
        assert {(e["version"], e["state"]) for e in index} == {
            ("1.0.0", "READY"),
            ("1.1.0", "READY"),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
