"""Which accelerators this machine has, asked honestly: `nvidia-smi` for the GPUs, and the
execution providers of the onnxruntime the engine would load (in a subprocess: the
controller does not import the engine's libraries). Read only when a spec asks for one."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

TIMEOUT = 20.0


@dataclass(frozen=True)
class Found:
    gpus: tuple[str, ...]  # accelerator names as specs write them, e.g. nvidia-t4
    providers: tuple[str, ...]  # onnxruntime execution providers available
    how: str  # what was asked, for the message

    def has(self, accelerator: str) -> bool:
        # CUDA-capable onnxruntime and the named GPU: both are needed to run on it.
        cuda = any(
            p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") for p in self.providers
        )
        return cuda and accelerator in self.gpus


def name_of(gpu: str) -> str:
    """`Tesla T4` -> `nvidia-t4`, `NVIDIA A100-SXM4-40GB` -> `nvidia-a100`."""
    words = re.sub(r"^(nvidia|tesla|geforce|quadro)\s+", "", gpu.strip().lower())
    words = re.sub(r"^(nvidia|tesla|geforce|quadro)\s+", "", words)
    model = re.split(r"[\s-]", words, maxsplit=1)[0]
    return "nvidia-" + re.sub(r"[^a-z0-9]", "", model)


def detect() -> Found:
    gpus: list[str] = []
    smi = shutil.which("nvidia-smi")
    if smi is None:
        how = "nvidia-smi: not installed"
    else:
        try:
            done = subprocess.run(
                [smi, "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
            gpus = [name_of(line) for line in done.stdout.splitlines() if line.strip()]
            how = f"nvidia-smi: {', '.join(gpus) or 'no GPU'}"
        except (OSError, subprocess.TimeoutExpired) as exc:
            how = f"nvidia-smi failed: {type(exc).__name__}"
    providers = _providers()
    how += f"; onnxruntime providers: {', '.join(providers) or 'onnxruntime not installed'}"
    return Found(gpus=tuple(gpus), providers=tuple(providers), how=how)


def _providers() -> list[str]:
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import onnxruntime as o; print(*o.get_available_providers())"],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return done.stdout.split() if done.returncode == 0 else []
