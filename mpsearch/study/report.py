"""One self-contained HTML file a person can mail or attach to a design review: the fronts (PNG
embedded as base64), every Pareto point, the per-layer formats of those plans, and how the
estimators compare at equal budgets. No scripts, no external files."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import pandas as pd

from .._version import __version__
from ..errors import MpsearchError
from ..formats import get_choice
from ..io import atomic_write_text
from .pareto import pareto_front, parse_directions
from .spec import GRID_DIMS

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f2f2f2}td.l,th.l{text-align:left}
.map td{text-align:center;font-family:monospace;font-size:12px}
.scroll{overflow-x:auto}.best{font-weight:bold}.note{color:#666;font-size:13px}
img{max-width:100%;border:1px solid #ddd}
"""


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.5g}"
    return html.escape(str(v))


def _cls(*names: str) -> str:
    names = [n for n in names if n]
    return f' class="{" ".join(names)}"' if names else ""


def _table(df: pd.DataFrame, text_cols: set[str], row_ids: list[str] | None = None,
           bold: dict[tuple[int, str], bool] | None = None) -> str:
    head = "".join(f"<th{_cls('l' if c in text_cols else '')}>{html.escape(str(c))}</th>" for c in df.columns)
    body = []
    for i, (_, r) in enumerate(df.iterrows()):
        rid = f' id="{row_ids[i]}"' if row_ids else ""
        marks = bold or {}
        cells = "".join(f"<td{_cls('l' if c in text_cols else '', 'best' if marks.get((i, c)) else '')}>"
                        f"{_fmt(r[c])}</td>" for c in df.columns)
        body.append(f"<tr{rid}>{cells}</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def _bits_colour(fmt: str) -> str:
    """Red (2 bits) to green (16 bits) on a log scale: where a plan spends its bits, at a glance."""
    try:
        bits = get_choice(fmt).weight.element_bits
    except MpsearchError:
        return "#ddd"
    t = min(max((math.log2(max(bits, 1)) - 1) / 3, 0.0), 1.0)
    return f"hsl({120 * t:.0f},60%,80%)"


def _format_maps(front: pd.DataFrame, label_cols: list[str]) -> str:
    out = []
    for model, g in front.groupby("model", sort=False):
        plans = [(r, json.loads(r["assignments"])) for _, r in g.iterrows()
                 if isinstance(r["assignments"], str)]
        if not plans:
            continue
        sites = list(plans[0][1])
        head = "".join(f'<th class="l">{html.escape(c)}</th>' for c in ["trial", *label_cols]) + "".join(
            f"<th>{html.escape(s)}</th>" for s in sites)
        rows = []
        for r, a in plans:
            left = "".join(f'<td class="l">{_fmt(r[c])}</td>' for c in ["trial", *label_cols])
            cells = "".join(f'<td style="background:{_bits_colour(a.get(s, ""))}">'
                            f'{html.escape(a.get(s, "-"))}</td>' for s in sites)
            rows.append(f"<tr>{left}{cells}</tr>")
        out.append(f"<h3>{html.escape(str(model))}</h3><div class='scroll'><table class='map'><tr>{head}</tr>"
                   f"{''.join(rows)}</table></div>")
    return "".join(out)


def _estimator_comparison(df: pd.DataFrame, dirs: list[tuple[str, bool]], quality: tuple[str, bool]) -> str:
    """Per (model, target, searcher, formats): the quality metric per budget and estimator, and how many
    points each estimator puts on the front drawn over all estimators."""
    qname, qmax = quality
    keys = [d for d in GRID_DIMS if d not in ("estimator", "budget")]
    out = []
    for group, g in df.groupby(keys, sort=False):
        budgets = list(dict.fromkeys(g["budget"]))
        ests = list(dict.fromkeys(g["estimator"]))
        piv = g.pivot_table(index="budget", columns="estimator", values=qname, aggfunc="first")
        piv = piv.reindex(index=budgets, columns=ests)
        bold = {}
        for i, b in enumerate(budgets):
            row = piv.loc[b].dropna()
            if len(row):
                best = row.max() if qmax else row.min()
                bold |= {(i, e): bool(row[e] == best) for e in row.index}
        front = pareto_front(g, dirs)
        on_front = front["estimator"].value_counts().reindex(ests, fill_value=0)
        table = piv.reset_index()
        table.columns = ["budget", *ests]
        summary = pd.DataFrame([["points on the joint front", *on_front.tolist()],
                                [f"mean {qname}", *[g[g.estimator == e][qname].mean() for e in ests]]],
                               columns=table.columns)
        caption = " · ".join(f"{k}={v}" for k, v in zip(keys, group, strict=True))
        out.append(f"<h3>{html.escape(caption)}</h3><p class='note'>{html.escape(qname)} "
                   f"({'higher' if qmax else 'lower'} is better) by budget; bold = best at that budget.</p>"
                   + _table(pd.concat([table, summary], ignore_index=True), {"budget"},
                            bold=bold))
    return "".join(out)


def render_report(df: pd.DataFrame, *, title: str, objectives, series: list[str], png: bytes,
                  description: str = "", failed: pd.DataFrame | None = None, grid_size: int | None = None,
                  storage: str = "") -> str:
    """The report as one HTML string. `df`: complete trials (from `load_study`)."""
    dirs = parse_directions(objectives)
    names = [n for n, _ in dirs]
    front = pareto_front(df, dirs, by=series) if len(df) else df
    measured = [d for d in dirs if f"fp_{d[0]}" in df.columns]
    quality = measured[0] if measured else dirs[-1]
    others = [d for d in GRID_DIMS if d not in series]
    extra = [c for c in ("bytes", "avg_bits", "omega", "latency", "energy")
             if c in df.columns and c not in names]
    cols = ["trial", *series, *others, *names, *extra, *(["guarded"] if "guarded" in df.columns else [])]
    text_cols = set(GRID_DIMS) | {"guarded"}
    n_failed = 0 if failed is None else len(failed)
    summary = (f"{len(df)} complete trials" + (f" of a {grid_size}-point grid" if grid_size else "")
               + (f", {n_failed} failed" if n_failed else "") + f"; {len(front)} Pareto points "
               f"(one front per {' / '.join(series) or 'study'}); objectives: "
               + ", ".join(f"{n} ({'max' if m else 'min'})" for n, m in dirs) + ".")
    split = df["eval_split"].iloc[0] if "eval_split" in df.columns and len(df) else None
    varying = [d for d in GRID_DIMS if d == "budget" or (len(df) and df[d].nunique() > 1)]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(description)}</p>" if description else "",
        f"<p>{html.escape(summary)}</p>",
        f"<p class='note'>Measured metrics are on the {html.escape(split)} split. Storage: "
        f"{html.escape(storage)}. Written by mpsearch {__version__}.</p>" if split else "",
        "<h2>Pareto fronts</h2>",
        f"<img alt='Pareto fronts' src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
        "<h2>Pareto points</h2>",
        _table(front[[c for c in cols if c in front.columns]], text_cols, [f"trial-{t}" for t in front.trial])
        if len(front) else "<p>No complete trial yet.</p>",
        "<h2>Per-layer formats of the Pareto plans</h2>",
        "<p class='note'>Cell colour: bits per weight element, red = 2 to green = 16.</p>",
        _format_maps(front, varying) if len(front) else "",
        "<h2>Estimator comparison</h2>",
        _estimator_comparison(df, dirs, quality) if len(df) else "",
    ]
    if n_failed:
        parts += ["<h2>Failed trials</h2>",
                  _table(failed[["trial", *GRID_DIMS, "error"]], set(GRID_DIMS) | {"error"})]
    if len(df):
        parts += ["<details><summary>All complete trials</summary>",
                  _table(df[[c for c in cols if c in df.columns]], text_cols), "</details>"]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def write_report(path: str | Path, **kwargs) -> Path:
    """Render and write atomically (a reader never sees half a report)."""
    atomic_write_text(path, render_report(**kwargs))
    return Path(path)
