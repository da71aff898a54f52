"""Fronts that never go backwards: a larger budget never keeps a plan that measures worse than a
smaller budget's plan, because that smaller plan fits the larger budget too.

Over one swept metric, budgets are nested: a plan within budget b fits every b' ≥ b. So after the
sweep, visiting budgets in increasing order and replacing any plan that measures worse (on the
calibration data, the data the planner may use) than the best plan seen so far by that best plan
makes the measured loss non-increasing in the budget by construction, whatever the searcher.
"""

from __future__ import annotations

import math

KEEP = ("kind", "label", "budget")  # what a carried-forward row keeps of its own


def carry_forward(rows: list[dict], key: str, higher_is_better: bool = False) -> list[dict]:
    """`rows` (one per budget, with `budget`, `cost`, the measured `key` and `assignments`) with each
    row's plan replaced by the best plan of any budget at or below its own when that one measures
    better; such rows get `carried_from` (the budget whose plan they now hold). Failed rows (no
    `cost`) and rows of another kind (uniform plans) are left alone."""
    sign = -1.0 if higher_is_better else 1.0
    best: dict | None = None
    out = [dict(r) for r in rows]
    for r in sorted((r for r in out if r.get("kind", "plan") == "plan" and not _nan(r.get("cost", math.nan))),
                    key=lambda r: r["budget"]):
        if best is not None and best["cost"] <= r["budget"] * (1 + 1e-9) and \
                sign * best[key] < sign * r[key] - 1e-12 * max(1.0, abs(r[key])):
            kept = {k: r[k] for k in KEEP if k in r}
            r.clear()
            r.update(best | kept | {"carried_from": best["budget"]})
        elif best is None or sign * r[key] < sign * best[key]:
            best = {k: v for k, v in r.items() if k != "carried_from"}
    return out


def _nan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)
