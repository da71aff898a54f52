"""Pareto extraction: the non-dominated rows of a table on two or three metrics, each minimized or
maximized, optionally within groups (one front per model / target / estimator)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from ..errors import UsageError
from ..search.dominance import pareto_mask


def parse_directions(objectives) -> list[tuple[str, bool]]:
    """`["bytes:min", "accuracy:max"]`, `{"bytes": "min"}`, Metric objects or (name, maximize) pairs
    -> [(name, maximize)]. A bare name is minimized."""
    if isinstance(objectives, dict):
        objectives = [f"{k}:{v}" for k, v in objectives.items()]
    out = []
    for o in objectives:
        if hasattr(o, "maximize") and hasattr(o, "name"):
            out.append((o.name, bool(o.maximize)))
        elif isinstance(o, tuple):
            out.append((o[0], bool(o[1])))
        else:
            name, _, d = str(o).partition(":")
            if d not in ("", "min", "max"):
                raise UsageError(f"direction {d!r} of {o!r} must be min or max, e.g. '{name}:min'")
            out.append((name, d == "max"))
    if not out:
        raise UsageError("name at least one metric for the Pareto front, e.g. ['bytes:min', 'accuracy:max']")
    return out


def pareto_front(df: pd.DataFrame, objectives, by: Iterable[str] | None = None) -> pd.DataFrame:
    """Rows of `df` on the Pareto front of `objectives`, per group of `by` columns when given.

    Rows missing any objective (failed trials) are left out. Sorted by group, then first objective.
    """
    dirs = parse_directions(objectives)
    names = [n for n, _ in dirs]
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise UsageError(f"no column {missing[0]!r} in the table; it has {', '.join(map(str, df.columns))}")
    by = list(by or [])
    ok = df.dropna(subset=names)
    if ok.empty:
        return ok
    groups = ok.groupby(by, sort=False, dropna=False) if by else [(None, ok)]
    parts = [g[pareto_mask(g[names].to_numpy(dtype=float), [m for _, m in dirs])] for _, g in groups]
    return pd.concat(parts).sort_values([*by, names[0]], kind="stable")
