"""Drift report views: a text table, stable JSON, and a self-contained HTML file with plots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.drift import hook, stats

JSON_FORMAT_VERSION = 1
TEXT_ROWS = 20  # features listed in text beyond the drifted ones

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class DriftRun:
    """Everything one `mlops drift` produced: what renderers read."""

    model: str
    version: str
    data: str
    result: stats.DriftResult
    report: str | None = None
    hook_command: str | None = None  # declared in the spec
    hook_webhook: str | None = None  # declared in the spec instead of a command
    hook: hook.HookResult | None = None  # set when it ran

    @property
    def ranked(self) -> list[stats.FeatureDrift]:
        """Drifted first, then by the size of the shift."""
        return sorted(self.result.features, key=lambda f: (not f.drifted, -abs(f.mean_shift)))


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def to_text(run: DriftRun) -> str:
    result = run.result
    lines = [
        f"Drift of {run.model}@{run.version} on {run.data} ({result.rows} rows), "
        f"threshold {result.threshold_sigma:g} sigma",
        f"  {'feature':<24} {'shift(sigma)':>12} {'PSI':>8} {'KS':>6}",
    ]
    ranked = run.ranked
    shown = ranked[: max(TEXT_ROWS, len(result.drifted))]
    for f in shown:
        mark = "!" if f.drifted else " "
        flag = "  DRIFT" if f.drifted else ""
        lines.append(
            f"{mark} {f.name:<24} {f.mean_shift:>+12.2f} {_num(f.psi, '8.3f')} "
            f"{_num(f.ks, '6.3f')}{flag}"
        )
    if len(ranked) > len(shown):
        lines.append(f"  ... {len(ranked) - len(shown)} more feature(s) within the threshold")
    drifted = result.drifted
    if drifted:
        names = ", ".join(f.name for f in drifted)
        lines.append(f"{len(drifted)} of {len(ranked)} feature(s) drifted: {names}")
    else:
        lines.append(
            f"No drift: all {len(ranked)} feature(s) within {result.threshold_sigma:g} sigma."
        )
    if run.report:
        lines.append(f"Report: {run.report}")
    lines.extend(_hook_lines(run))
    return "\n".join(lines)


def _hook_lines(run: DriftRun) -> list[str]:
    if run.hook is not None:
        h = run.hook
        status = "ok" if h.ok else f"FAILED: {h.error}"
        lines = [f"on_drift: `{h.command}` {status} ({h.seconds:.1f}s)"]
        lines.extend(f"  | {line}" for line in h.output.rstrip().splitlines()[-20:])
        return lines
    declared = run.hook_command or (f"POST {run.hook_webhook}" if run.hook_webhook else None)
    if declared and run.result.has_drift:
        return [f"on_drift: `{declared}` not run (pass --run-hook to run it)"]
    return []


def to_json(run: DriftRun) -> dict[str, Any]:
    result = run.result
    return {
        "format_version": JSON_FORMAT_VERSION,
        "model": run.model,
        "version": run.version,
        "data": run.data,
        "rows": result.rows,
        "threshold_sigma": result.threshold_sigma,
        "drift": result.has_drift,
        "drifted": [f.name for f in result.drifted],
        "features": [
            {
                "name": f.name,
                "drifted": f.drifted,
                "mean_shift": f.mean_shift,
                "psi": f.psi,
                "ks": f.ks,
                "train_mean": f.train_mean,
                "train_std": f.train_std,
                "live_mean": f.live_mean,
                "live_std": f.live_std,
                "rows": f.rows,
                "missing": f.missing,
            }
            for f in result.features
        ],
        "report": run.report,
        "hook": _hook_json(run),
    }


def _hook_json(run: DriftRun) -> dict[str, Any] | None:
    if run.hook_command is None and run.hook_webhook is None:
        return None
    h = run.hook
    return {
        "command": run.hook_command,
        "webhook": run.hook_webhook,
        "ran": h is not None,
        "ok": None if h is None else h.ok,
        "exit_code": None if h is None else h.exit_code,
        "seconds": None if h is None else round(h.seconds, 3),
        "error": None if h is None else h.error,
        "output": None if h is None else h.output,
    }


def write_html(run: DriftRun, path: Path, *, progress: Progress | None = None) -> None:
    """Render and write atomically: on any failure no (partial) report is left behind."""
    from mlops.drift import page  # matplotlib is heavy: only when a report is asked for

    page.write(run, path, progress=progress)
