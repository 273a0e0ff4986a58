"""Lean model images: size, build times, start to ready, conformance time.

    python bench/images.py                 # storage driver chosen as the services do
    python bench/images.py --driver vfs    # podman's vfs driver (a full copy per layer)

Runs against real services started for the run (podman's Docker-compatible API, a loopback
docker-registry) on a fresh image store, with the offline Debian base (debootstrap, cached in
~/.cache/mlops/images like the wheels). Measured:

- cold: the first image of the example model (1.0.0) on an empty store: base pull, engine
  image build, model layer, run to ready, conformance, push;
- new version with cache: 1.1.0 of the same model once the engine image exists (the goal is
  under 10 s for the build);
- container start to ready and conformance time (the accuracy check on the 2,000-row
  validation set plus the latency check: 200 single-row requests over 2 connections);
- image size: the lean image against a naive image from the same base holding the whole
  development environment (this checkout's .venv site-packages: mlflow, scikit-learn, test
  tools ...); the goal is at most a third. Uncompressed (local store) and compressed (the
  layers as pushed).

The table goes to stdout and bench/RESULTS-images.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import docker

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from mlops import datasets  # noqa: E402
from mlops.conformance import checks  # noqa: E402
from mlops.providers import images  # noqa: E402
from mlops.providers.engine import client as engine_client  # noqa: E402
from mlops.providers.images import context, offline_base, registry, services  # noqa: E402
from mlops.providers.mlflow import onnx_artifact  # noqa: E402

RESULTS = HERE / "RESULTS-images.md"
NAME = "fraud-scorer"


class Timer(images.TerminalHooks):
    """Per-step seconds of the last pipeline, the build lines shown as they come."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = {}

    def finished(self, step: str, seconds: float, detail: str) -> None:
        super().finished(step, seconds, detail)
        self.seconds[step] = seconds


def train(out: Path) -> dict[str, dict[str, Any]]:
    versions = {}
    for semver in ("1.0.0", "1.1.0"):
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "train.py"), "--version", semver,
             "--out", str(out)],
            check=True, capture_output=True,
        )  # fmt: skip
        artifact = out / "models" / f"{NAME}-{semver}.onnx"
        report = json.loads((out / "models" / f"{NAME}-{semver}.json").read_text())
        signature = onnx_artifact.read_signature(artifact)
        versions[semver] = {
            "artifact": artifact,
            "sha256": hashlib.sha256(artifact.read_bytes()).hexdigest(),
            "baseline": float(report["value"]),
            "settings": {"signature": signature.model_dump(mode="json"), "warmup": {"requests": 2}},
        }
    return versions


def conformance(
    validation: Path, semver: str, version: Mapping[str, Any], timings: dict[str, Any]
) -> images.Conformance:
    """Accuracy on the validation set and p99 of single-row requests (mlops.conformance.checks)
    through the running container's V2 API."""

    def check(url: str) -> Mapping[str, Any]:
        signature = version["settings"]["signature"]
        dtypes = {t["name"]: t["dtype"] for t in signature["inputs"]}
        first = signature["outputs"][0]["name"]
        inputs, labels = datasets.load_validation(validation, list(dtypes))
        client = engine_client.VersionClient(url, NAME, semver, dtypes, [first])
        try:
            score = checks.accuracy(client, inputs, labels, first)
        finally:
            client.close()

        def make() -> tuple[checks.Infer, Any]:
            one = engine_client.VersionClient(url, NAME, semver, dtypes, [first])
            return one, one.close

        latency = checks.latency(make, checks.single_rows(inputs))
        timings.update(accuracy=score, p99_ms=latency.p99_ms, p50_ms=latency.p50_ms)
        passed = score >= version["baseline"] - 0.005
        return {"passed": passed, "reason": "" if passed else f"accuracy {score:.4f}"}

    return check


def naive_image(client: docker.DockerClient, base: str) -> str:
    """The same base plus this checkout's whole development environment (site-packages)."""
    site = Path(sysconfig.get_paths()["purelib"])
    files: dict[str, Path | bytes] = {
        "Dockerfile": f"FROM {base}\nCOPY site-packages/ /opt/venv/site-packages/\n".encode()
    }
    for path in site.rglob("*"):
        if path.is_file() and not path.is_symlink():
            files[f"site-packages/{path.relative_to(site)}"] = path
    tag = "localhost/mlops-naive:bench"
    for _ in client.api.build(
        fileobj=context.pack(files), custom_context=True, tag=tag, rm=True, pull=False, decode=True
    ):
        pass
    return str(client.images.get(tag).id)


def pushed_bytes(ref: images.ImageRef) -> int:
    host, path = registry.split(ref.repository)
    with registry.RegistryClient(host) as reader:
        manifest = reader.manifest(path, ref.digest)
        assert manifest is not None
        layers = manifest.document["layers"]
        return int(manifest.document["config"]["size"]) + sum(int(x["size"]) for x in layers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--driver", choices=["auto", "overlay", "vfs"], default="auto")
    args = parser.parse_args()
    if args.driver != "auto":
        os.environ["MLOPS_PODMAN_STORAGE_DRIVER"] = args.driver
    services.install()
    cache = images.default_cache_dir()
    with tempfile.TemporaryDirectory(prefix="mlops-bench-images-") as tmp:
        work = Path(tmp)
        stack = services.start(work / "services")
        driver = services.storage_driver(work)
        try:
            client = docker.DockerClient(base_url=stack.docker_url, timeout=3600)
            rows = run(client, stack, cache, work)
            rows["driver"] = driver
        finally:
            stack.podman("rm", "--all", "--force")
            stack.stop()
            stack.podman("system", "reset", "--force")
    report(rows)
    return 0


def run(
    client: docker.DockerClient, stack: services.Services, cache: Path, work: Path
) -> dict[str, Any]:
    started = time.monotonic()
    base = offline_base.publish(client, stack.registry, offline_base.rootfs(cache))
    rows: dict[str, Any] = {"base_publish_s": time.monotonic() - started}
    versions = train(work / "example")
    validation = work / "example" / "data" / f"{NAME}-val.npz"
    config = images.ImagesConfig(base=base, repository=f"{stack.registry}/mlops")
    refs = {}
    for semver, label in (("1.0.0", "cold"), ("1.1.0", "new_version")):
        timer = Timer()
        builder = images.ImageBuilder(client, config, cache, hooks=timer)
        version = versions[semver]
        quality: dict[str, Any] = {}
        started = time.monotonic()
        refs[semver] = builder.ensure(
            NAME, semver, version["artifact"], version["settings"], version["sha256"],
            conformance=conformance(validation, semver, version, quality),
        )  # fmt: skip
        rows[label] = {"total_s": time.monotonic() - started, **timer.seconds, **quality}
    lean = client.images.pull(refs["1.1.0"].reference)
    rows["lean_bytes"] = int(lean.attrs["Size"])
    rows["lean_pushed_bytes"] = pushed_bytes(refs["1.1.0"])
    naive = client.images.get(naive_image(client, base))
    rows["naive_bytes"] = int(naive.attrs["Size"])
    rows["base_bytes"] = int(client.images.get(base).attrs["Size"])
    return rows


def report(rows: dict[str, Any]) -> None:
    cold, new = rows["cold"], rows["new_version"]
    build_new = new.get("build", 0.0)
    ratio = rows["lean_bytes"] / rows["naive_bytes"]
    mib = 1 << 20
    lines = [
        f"## podman storage driver: {rows['driver']}",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other work); base: "
        f"offline Debian minbase + python3 ({rows['base_bytes'] / mib:.0f} MiB).",
        "",
        "| measure | value | goal |",
        "| --- | --- | --- |",
        f"| lean image (uncompressed) | {rows['lean_bytes'] / mib:.0f} MiB | |",
        f"| lean image (compressed, as pushed) | {rows['lean_pushed_bytes'] / mib:.0f} MiB | |",
        f"| naive image, same base + dev environment | {rows['naive_bytes'] / mib:.0f} MiB | |",
        f"| lean / naive | {ratio:.2f} | <= 0.33 |",
        f"| cold: engine image build | {cold.get('engine', 0.0):.1f} s | |",
        f"| cold: whole pipeline (base pull to pushed digest) | {cold['total_s']:.1f} s | |",
        f"| new version: model image build | {build_new:.1f} s | < 10 s |",
        f"| new version: whole pipeline | {new['total_s']:.1f} s | |",
        f"| container start to ready | {new.get('run', 0.0):.1f} s "
        f"(cold {cold.get('run', 0):.1f} s) | |",
        f"| conformance (accuracy 2,000 rows + 200-request latency) | "
        f"{new.get('conformance', 0.0):.1f} s (p99 {new.get('p99_ms', 0):.2f} ms) | |",
        f"| push of a new version | {new.get('push', 0.0):.1f} s | |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    print(json.dumps(rows, indent=2, default=str))
    # One section per storage driver; a run replaces its own.
    sections = {}
    if RESULTS.is_file():
        for part in RESULTS.read_text().split("\n## ")[1:]:
            sections[part.split("\n", 1)[0]] = "## " + part.rstrip() + "\n"
    sections[lines[0][3:]] = text
    header = "# Lean model images (`python bench/images.py [--driver vfs]`)\n"
    RESULTS.write_text(header + "\n" + "\n".join(sections[k] for k in sorted(sections)))


if __name__ == "__main__":
    sys.exit(main())
