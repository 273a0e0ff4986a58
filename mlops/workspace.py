"""The workspace: a directory with an optional `mlops.yaml` and state in `.mlops/`."""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from mlops import errors, fsio
from mlops.spec import models as spec
from mlops.spec.paths import resolve_inside as resolve_inside  # public here too

CONFIG_FILE = "mlops.yaml"
STATE_DIR = ".mlops"
ADMIN_TOKEN_FILE = "admin-token"  # in STATE_DIR, mode 0600: the local engine's admin token


@dataclass(frozen=True)
class Workspace:
    root: Path
    config: spec.WorkspaceConfig

    @property
    def state_dir(self) -> Path:
        return self.root / STATE_DIR

    def ensure_state_dir(self) -> Path:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return self.state_dir

    @property
    def admin_token_file(self) -> Path:
        return self.state_dir / ADMIN_TOKEN_FILE

    def ensure_admin_token(self) -> Path:
        """The workspace's admin token file, created (mode 0600, 256 random bits) if absent."""
        path = self.admin_token_file
        try:
            # Created whole or not at all: a crash never leaves an empty token file.
            fsio.atomic_write(path, secrets.token_urlsafe(32) + "\n", mode=0o600, exclusive=True)
        except FileExistsError:
            os.chmod(path, 0o600)  # never left readable by others, whoever made it
        return path

    def admin_token(self) -> str | None:
        """The admin token, if the workspace has one."""
        try:
            return self.admin_token_file.read_text().strip() or None
        except OSError:
            return None

    @property
    def warnings(self) -> list[str]:
        """Explicit choices in mlops.yaml worth a line in validate and plan."""
        return serve_warnings(self.config)

    @property
    def registry_uri(self) -> str:
        if self.config.registry_uri:
            return self.config.registry_uri
        return f"sqlite:///{self.state_dir / 'mlflow.db'}"

    @property
    def artifact_root(self) -> Path:
        return self.state_dir / "artifacts"

    def inside(self, path: Path, *, what: str = "path") -> Path:
        """Resolve `path` (symlinks included) and require it to stay inside the workspace."""
        return resolve_inside(path, self.root, what=what)


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname: it may resolve to anything


def exposure_warning(what: str, host: str) -> str:
    """One line for an address other machines can reach; `what` names the setting."""
    if "admin" in what:
        return (
            f"{what} {host} is not a loopback address: the engine's admin API (load, unload, "
            "routing) is reachable from other machines; give it --admin-token-file"
        )
    return (
        f"{what} {host} is not a loopback address: the engine's inference port is reachable "
        "from other machines (the admin API stays on loopback)"
    )


def serve_warnings(config: spec.WorkspaceConfig) -> list[str]:
    host = config.serve.host
    return [] if is_loopback(host) else [exposure_warning("serve.host", host)]


def find_root(start: Path | None = None) -> Path:
    """Nearest directory upwards with `mlops.yaml`; else `start` itself."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return here


def open_workspace(path: str | Path | None = None) -> Workspace:
    """Find the workspace and read its `mlops.yaml` (defaults when absent)."""
    root = Path(path).resolve() if path else find_root()
    if not root.is_dir():
        raise errors.UsageError(f"workspace {str(root)!r} is not a directory")
    config_path = root / CONFIG_FILE
    if not config_path.is_file():
        return Workspace(root=root, config=spec.WorkspaceConfig())
    # Imported here so that commands that never read config stay light.
    from mlops.spec import load

    return Workspace(root=root, config=load.load_workspace_config(config_path))
