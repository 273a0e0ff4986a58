"""Build contexts: the Dockerfiles of the engine image and of a model image, packed as tar
streams whose bytes depend only on the files' contents (fixed mtimes, owners and modes), so
the same inputs always make the same context.

Two images, two builds:
- the engine image (base + runtime dependencies + mlops), built once per base, dependency set
  and mlops source; a builder stage installs the wheels and only site-packages are copied out,
  so pip, the wheels and any cache stay behind;
- a model image: `FROM` the engine image, then the model and its settings as the one last
  layer. A new version of a model reuses every engine layer and adds one layer of its own.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

ENGINE_PORT = 8080
MODELS_DIR = "/models"
RUNTIME_UID = 10001
LIB_DIR = "/opt/mlops/lib"
ENGINE_DIR = "/opt/mlops/engine"
# Tools and tests of the dependencies the engine never imports (a third of onnxruntime's
# Python files, numpy's test suites and Fortran tooling).
PRUNE = (
    f"{LIB_DIR}/onnxruntime/transformers",
    f"{LIB_DIR}/onnxruntime/quantization",
    f"{LIB_DIR}/onnxruntime/tools",
    f"{LIB_DIR}/numpy/f2py",
    f"{LIB_DIR}/numpy/_pyinstaller",
    f"{LIB_DIR}/numpy/_core/include",
)
SMOKE_IMPORTS = "import mlops.commands.serve, mlops.serving.worker, mlops.serving.session, uvloop"
HEALTH_PROBE = (
    "import urllib.request; "
    f"urllib.request.urlopen('http://127.0.0.1:{ENGINE_PORT}/v2/health/ready', timeout=2)"
)


def engine_dockerfile(base: str, wheels: list[str], pip: str, engine: str) -> str:
    """Dependencies and engine in separate layers (a new mlops keeps the dependency layer)."""
    pip_run = f"python3 /tmp/wheels/{pip}/pip install --no-cache-dir --no-index --no-deps"
    pip_run += " --disable-pip-version-check --root-user-action=ignore"
    prune = " ".join(PRUNE)
    health = json.dumps(["python3", "-c", HEALTH_PROBE])
    command = json.dumps(
        ["--repository", MODELS_DIR, "--host", "0.0.0.0", "--port", str(ENGINE_PORT),
         "--load-all", "--state-dir", "/tmp/mlops-engine"]
    )  # fmt: skip
    return f"""\
FROM {base} AS builder
COPY wheels/ /tmp/wheels/
RUN {pip_run} --target {LIB_DIR} {" ".join(f"/tmp/wheels/{w}" for w in wheels)} \\
 && {pip_run} --target {ENGINE_DIR} /tmp/wheels/{engine} \\
 && rm -rf {LIB_DIR}/bin {ENGINE_DIR}/bin {prune} \\
 && find /opt/mlops -depth -type d -name tests -exec rm -rf {{}} + \\
 && PYTHONPATH={ENGINE_DIR}:{LIB_DIR} python3 -c "{SMOKE_IMPORTS}"

FROM {base}
COPY --from=builder {LIB_DIR} {LIB_DIR}
COPY --from=builder {ENGINE_DIR} {ENGINE_DIR}
ENV PYTHONPATH={ENGINE_DIR}:{LIB_DIR} PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HOME=/tmp
USER {RUNTIME_UID}:{RUNTIME_UID}
EXPOSE {ENGINE_PORT}
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD {health}
ENTRYPOINT ["python3", "-m", "mlops", "serve"]
CMD {command}
"""


def model_dockerfile(engine_image: str, name: str, semver: str) -> str:
    return f"FROM {engine_image}\nCOPY model/ {MODELS_DIR}/{name}/{semver}/\n"


def settings_bytes(settings: Mapping[str, Any]) -> bytes:
    """settings.json as the local target stages it (sorted keys), so equal settings hash equal."""
    return json.dumps(dict(settings), indent=2, sort_keys=True).encode()


def pack(files: Mapping[str, Path | bytes]) -> IO[bytes]:
    """A tar of `files` (archive name -> path or bytes) with fixed metadata, ready to send."""
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 << 20)  # noqa: SIM115
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(files):
            source = files[name]
            info = tarfile.TarInfo(name)
            info.mode, info.mtime, info.uid, info.gid = 0o644, 0, 0, 0
            if isinstance(source, bytes):
                info.size = len(source)
                tar.addfile(info, io.BytesIO(source))
            else:
                info.size = source.stat().st_size
                with source.open("rb") as handle:
                    tar.addfile(info, handle)
    out.seek(0)
    return out
