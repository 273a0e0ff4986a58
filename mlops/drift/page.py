"""The HTML drift report: one self-contained file, plots embedded as base64 PNGs.

Figures are drawn through matplotlib's object API on an Agg canvas (no pyplot), so nothing
needs a display and no global figure state leaks between reports.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from mlops import fsio
from mlops.drift import report, stats

# Beyond this many features only the table lists the rest; plots of 1,000 features help nobody.
MAX_PLOTS = 60
TRAIN_COLOUR = "#4c72b0"
LIVE_COLOUR = "#dd8452"
DRIFT_COLOUR = "#c0392b"

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}
td,th{padding:.25rem .6rem;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child{text-align:left}tr.drift td{color:#c0392b;font-weight:600}
.grid{display:flex;flex-wrap:wrap;gap:1rem}.plot{border:2px solid #ddd;padding:.3rem}
.plot.drift{border-color:#c0392b}.verdict{font-size:1.2rem;font-weight:600}.bad{color:#c0392b}
.good{color:#2e7d32}
"""


def plot_png(feature: stats.FeatureDrift) -> bytes:
    """Training vs live distribution over the training bins, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 2.6), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    edges = list(feature.bin_edges)
    ax.stairs(
        feature.train_hist, edges, fill=True, alpha=0.45, color=TRAIN_COLOUR, label="training"
    )
    ax.stairs(feature.live_hist, edges, linewidth=2, color=LIVE_COLOUR, label="live")
    ax.axvline(feature.train_mean, color=TRAIN_COLOUR, linestyle="--", linewidth=1)
    ax.axvline(feature.live_mean, color=LIVE_COLOUR, linestyle="--", linewidth=1)
    title_colour = DRIFT_COLOUR if feature.drifted else "#222"
    ax.set_title(
        f"{feature.name}  shift {feature.mean_shift:+.2f} sigma", fontsize=9, color=title_colour
    )
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    # Fixed margins: tight_layout measures every text artist and nearly doubles render time.
    fig.subplots_adjust(left=0.1, right=0.97, top=0.88, bottom=0.12)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def render(run: report.DriftRun, *, progress: report.Progress | None = None) -> str:
    result = run.result
    e = html.escape
    plotted = [f for f in run.ranked if f.bin_edges][:MAX_PLOTS]
    figures = []
    for done, feature in enumerate(plotted, start=1):
        data = base64.b64encode(plot_png(feature)).decode("ascii")
        css = "plot drift" if feature.drifted else "plot"
        figures.append(
            f'<figure class="{css}"><img alt="{e(feature.name)}: training vs live" '
            f'src="data:image/png;base64,{data}"></figure>'
        )
        if progress:
            progress(done, len(plotted))
    drifted = result.drifted
    verdict = (
        f'<p class="verdict bad">Drift in {len(drifted)} of {len(result.features)} feature(s): '
        f"{e(', '.join(f.name for f in drifted))}</p>"
        if drifted
        else f'<p class="verdict good">No drift in {len(result.features)} feature(s).</p>'
    )
    rows = "".join(_row(f) for f in run.ranked)
    more = len([f for f in run.ranked if f.bin_edges]) - len(plotted)
    note = f"<p>{more} more feature(s) are in the table only.</p>" if more > 0 else ""
    title = f"Drift report: {run.model}@{run.version}"
    return (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{e(title)}</h1>"
        f"<p>Data <code>{e(run.data)}</code>, {result.rows} rows; drift when the mean moves "
        f"more than {result.threshold_sigma:g} training standard deviations.</p>{verdict}"
        "<table><tr><th>feature</th><th>shift (sigma)</th><th>PSI</th><th>KS</th>"
        "<th>training mean</th><th>live mean</th><th>training std</th><th>live std</th>"
        f"<th>missing</th></tr>{rows}</table>"
        f'<h2>Distributions</h2>{note}<div class="grid">{"".join(figures)}</div>'
        "</body></html>\n"
    )


def _row(f: stats.FeatureDrift) -> str:
    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    css = ' class="drift"' if f.drifted else ""
    return (
        f"<tr{css}><td>{html.escape(f.name)}</td><td>{f.mean_shift:+.2f}</td><td>{num(f.psi)}</td>"
        f"<td>{num(f.ks)}</td><td>{num(f.train_mean)}</td><td>{num(f.live_mean)}</td>"
        f"<td>{num(f.train_std)}</td><td>{num(f.live_std)}</td><td>{f.missing}</td></tr>"
    )


def write(run: report.DriftRun, path: Path, *, progress: report.Progress | None = None) -> None:
    text = render(run, progress=progress)
    fsio.atomic_write(path, text)  # 0644 (minus umask): readable like any report
