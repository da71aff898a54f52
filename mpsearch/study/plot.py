"""The fronts as a matplotlib figure: one series per model / target / estimator, axes labelled with
metric, unit and direction. Built on `matplotlib.figure.Figure` (no pyplot state, any backend)."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pandas as pd

from ..io import atomic_write_bytes
from .pareto import pareto_front, parse_directions

_UNITS = {"bytes": "bytes", "bytes_16bit": "bytes", "avg_bits": "bits/weight", "bits": "bits",
          "bops": "BOPs/sample", "latency": "s", "energy": "J", "omega": "predicted Ω", "sqnr": "dB"}


def axis_label(name: str, maximize: bool, split: str | None = None) -> str:
    unit = _UNITS.get(name)
    where = f" on {split}" if split and name not in _UNITS else ""
    return f"{name}{where}" + (f" [{unit}]" if unit and unit != name else "") + \
        f" ({'higher' if maximize else 'lower'} is better)"


def series_label(row, series: list[str]) -> str:
    return " · ".join(str(row[s]) for s in series) if series else "all trials"


def plot_fronts(df: pd.DataFrame, objectives, series: list[str], title: str = ""):
    """A Figure: with two metrics one panel, with three one panel per pair (projections of the 3-D
    front). Every complete trial is a faint dot; each series' front is drawn in its own colour."""
    from matplotlib.figure import Figure

    dirs = parse_directions(objectives)
    pairs = list(itertools.combinations(range(len(dirs)), 2)) or [(0, 0)]
    fig = Figure(figsize=(6.4 * len(pairs), 4.8), layout="constrained")
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    front = pareto_front(df, dirs, by=series) if len(df) else df
    split = df["eval_split"].iloc[0] if "eval_split" in df.columns and len(df) else None
    groups = list(front.groupby(series, sort=True)) if series and len(front) else [("all", front)]
    colours = [f"C{i % 10}" for i in range(len(groups))]
    for ax, (i, j) in zip(axes, pairs, strict=True):
        (xn, xmax), (yn, ymax) = dirs[i], dirs[j]
        if len(df):
            ax.scatter(df[xn], df[yn], s=12, c="0.75", label="all trials", zorder=1)
        for colour, (_, g) in zip(colours, groups, strict=True):
            g = g.sort_values(xn)
            label = series_label(g.iloc[0], series)
            style = "-o" if len(dirs) == 2 else "o"
            # The staircase bounds what is attainable: the best y among points at least as good in x.
            step = "steps-pre" if xmax else "steps-post"
            ax.plot(g[xn], g[yn], style, color=colour, label=label, markersize=5, zorder=2,
                    drawstyle=step if len(dirs) == 2 else "default")
        for axis, name in (("x", xn), ("y", yn)):  # the unquantized model, where it is measured
            if f"fp_{name}" in df.columns:
                for k, (model, fp) in enumerate(df.groupby("model", sort=True)[f"fp_{name}"].first().items()):
                    line = ax.axhline if axis == "y" else ax.axvline
                    line(fp, ls="--", lw=1, color=f"0.{3 + k % 5}", label=f"{model} unquantized", zorder=0)
        ax.set_xlabel(axis_label(xn, xmax, split))
        ax.set_ylabel(axis_label(yn, ymax, split))
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize="small", loc="best")
    fig.suptitle(title or "Pareto fronts")
    return fig


def figure_labels(fig) -> list[tuple[str, str]]:
    return [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]


def png_bytes(fig) -> bytes:
    """PNG with the title and axis labels also written as PNG text chunks (machine-checkable)."""
    labels = "; ".join(f"x: {x} | y: {y}" for x, y in figure_labels(fig))
    title = fig.get_suptitle()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Title": title, "Description": labels,
                                                      "Software": "mpsearch"})
    return buf.getvalue()


def save_png(fig, path: str | Path) -> Path:
    atomic_write_bytes(path, png_bytes(fig))
    return Path(path)
