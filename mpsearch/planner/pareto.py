"""The whole trade-off curve: sweep one budget, plan at each point, measure, keep the non-dominated.

One `Planner` serves every point (one sensitivity table, one cost table), and each ILP starts from
the previous, cheaper point's plan (it fits every larger budget, so it is a valid warm start).
Every uniform-precision plan is measured beside the sweep, and each sweep includes the budgets
those uniform plans cost, so "does mixed precision beat uniform at equal cost?" has a direct answer.
The sweep never goes backwards: a smaller budget's plan fits every larger one, so a larger budget
whose plan measures worse on the calibration data gets that plan instead (`search.monotone`); the
measured calibration loss is non-increasing in the budget by construction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..budget import COLUMNS, Budget, format_metric
from ..data import as_data
from ..errors import InfeasibleBudget, UsageError
from ..io import atomic_write, atomic_write_text
from ..objectives import as_loss, better
from ..search.dominance import pareto_mask
from ..search.monotone import carry_forward

UNITS = {"memory": ("bytes", "size (MB)", 1e-6), "bits": ("avg_bits", "average bits per weight", 1.0),
         "latency": ("latency", "latency (ms)", 1e3), "energy": ("energy", "energy (mJ)", 1e3),
         "bops": ("bops", "GBOPs per sample", 1e-9)}


def non_dominated(cost: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Mask of (cost, loss) points no other point beats on both (≤ on both and < on one)."""
    return pareto_mask(np.column_stack([cost, loss]), [False, False])


@dataclass
class ParetoFront:
    """`points`: one row per swept plan (kind 'plan') and per uniform plan (kind 'uniform'): the budget,
    the plan's totals (`cost` in the swept metric), measured metrics (`cal_*` on calibration data,
    `test_*` on held-out data when given), `front` (non-dominated among the plans) and the assignments."""

    points: pd.DataFrame
    metric: str
    objective: str
    settings: dict = field(default_factory=dict)
    higher_is_better: bool = False

    @property
    def front(self) -> pd.DataFrame:
        return self.points[(self.points.kind == "plan") & self.points.front].sort_values("cost")

    def dominance(self, prefix: str = "cal") -> pd.DataFrame:
        """Per uniform plan: the best front plan at equal or lower cost, and whether it is at least as good."""
        col = f"{prefix}_{self.objective}"
        rows = []
        plans = self.points[self.points.kind == "plan"]
        for u in self.points[self.points.kind == "uniform"].itertuples():
            cheaper = plans[plans.cost <= u.cost * (1 + 1e-9)]
            if not len(cheaper):
                rows.append({"uniform": u.label, "cost": u.cost, col: getattr(u, col), "best_plan": None})
                continue
            b = cheaper.loc[as_loss(self.higher_is_better, cheaper[col]).idxmin()]
            theirs = getattr(u, col)
            rows.append({"uniform": u.label, "cost": u.cost, col: theirs, "plan_cost": b.cost,
                         f"plan_{col}": b[col], "dominated": not better(self.higher_is_better, theirs, b[col]),
                         "strictly": better(self.higher_is_better, b[col], theirs)})
        return pd.DataFrame(rows)

    def table(self) -> pd.DataFrame:
        cols = ["kind", "label", "budget", "cost", "avg_bits", "bytes"] + \
            [c for c in self.points.columns if c.startswith(("cal_", "test_"))] + ["front"]
        return self.points[[c for c in cols if c in self.points.columns]]

    def save(self, out: str | Path) -> dict[str, Path]:
        """Write `<out>.csv` (every point, assignments as JSON) and `<out>.png` (the plot), atomically."""
        out = Path(out)
        if out.suffix in (".csv", ".png"):
            out = out.with_suffix("")
        frame = self.points.assign(assignments=self.points.assignments.map(json.dumps))
        csv = out.with_suffix(".csv")
        atomic_write_text(csv, frame.to_csv(index=False))
        png = out.with_suffix(".png")
        self.plot(png)
        return {"csv": csv, "png": png}

    def plot(self, path: str | Path) -> Path:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        _, label, mult = UNITS[self.metric]
        if self.metric == "memory" and self.points.cost.max() < 1e6:
            label, mult = "size (KB)", 1e-3
        test = f"test_{self.objective}" in self.points.columns
        panels = [("cal", "calibration data")] + ([("test", "held-out data")] if test else [])
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.2), squeeze=False)
        plans = self.points[self.points.kind == "plan"].sort_values("cost")
        uni = self.points[self.points.kind == "uniform"]
        for ax, (prefix, title) in zip(axes[0], panels):
            col = f"{prefix}_{self.objective}"
            ax.plot(plans.cost * mult, plans[col], "o", color="0.7", ms=4, label="swept plans")
            fr = plans[plans.front]
            ax.plot(fr.cost * mult, fr[col], "o-", color="C0", label="Pareto front (mixed)")
            ax.plot(uni.cost * mult, uni[col], "s", color="C3", label="uniform precision")
            for u in uni.itertuples():
                ax.annotate(u.label.replace("uniform ", ""), (u.cost * mult, getattr(u, col)), fontsize=7,
                            xytext=(3, 3), textcoords="offset points")
            ax.set_xlabel(label)
            ax.set_ylabel(f"{self.objective} ({title})")
            finite = pd.concat([plans[col], uni[col]]).replace([np.inf, -np.inf], np.nan).dropna()
            if len(finite) and finite.max() > 20 * max(finite.min(), 1e-12):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        try:
            return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
        finally:
            plt.close(fig)


def _sweep_budgets(metric: str, lo: float, hi: float, points: int, extra: list[float]) -> list[float]:
    vals = set(np.linspace(lo, hi, points).tolist()) | {v for v in extra if lo - 1e-9 <= v <= hi + 1e-9}
    out: list[float] = []
    for v in sorted(vals):
        if not out or v > out[-1] * (1 + 1e-6) + 1e-12:
            out.append(v)
    return out


def sweep(planner, metric: str = "memory", *, points: int = 10, budgets: list | None = None, test=None,
          progress: bool | None = None) -> ParetoFront:
    """`pareto` on a `Planner`: its sensitivity table, cost table and activation scales serve every point."""
    if metric not in COLUMNS:
        raise UsageError(f"unknown metric {metric!r}; use one of {', '.join(COLUMNS)}")
    col, costs, ref = COLUMNS[metric], planner.costs, planner.reference
    if col not in costs.columns:
        raise UsageError(f"a {metric} sweep needs a cost model that predicts {metric}; pass --hardware NAME")
    sens = planner.sensitivity()

    def model_level(total: float) -> float:  # sum over sites -> the budget's unit
        return total / ref.weights if metric == "bits" else total + ref.fixed.get(col, 0.0)

    # fixed (--exclude/--pin) sites keep their format in every uniform row (mpsearch.scope)
    uniform = {c.name: planner.scope.uniform([s.name for s in planner.sites], c.name) for c in planner.uniform_choices}
    by_pair = costs.set_index(["site", "format"])
    uni_cost = {n: model_level(float(by_pair.loc[list(a.items())][col].sum())) for n, a in uniform.items()}
    values = [float(Budget.parse(b).value) if not isinstance(b, (int, float)) else float(b) for b in budgets] \
        if budgets else _sweep_budgets(metric, model_level(float(costs.groupby("site")[col].min().sum())),
                                       model_level(float(costs.groupby("site")[col].max().sum())), points,
                                       list(uni_cost.values()))
    test = as_data(test) if test is not None else None
    if test is not None and planner.objective.needs_reference:
        test = test.with_reference(planner.model)
    metrics = planner.metrics()

    def measured(assign: dict[str, str]) -> dict[str, float]:
        out = {f"cal_{k}": v for k, v in planner.measure(assign, metrics=metrics).items()}
        if test is not None:
            out |= {f"test_{k}": v for k, v in planner.measure(assign, test, metrics).items()}
        return out

    rows = _plan_points(planner, metric, values, measured, progress)
    for name, assign in uniform.items():
        tot = by_pair.loc[list(assign.items())]
        rows.append({"kind": "uniform", "label": f"uniform {name}", "budget": math.nan, "cost": uni_cost[name],
                     "avg_bits": float(tot.bits.sum()) / ref.weights,
                     "bytes": float(tot.bytes.sum()) + ref.fixed["bytes"], **measured(assign), "assignments": assign})
    rows = carry_forward(rows, f"cal_{planner.objective.name}", planner.objective.higher_is_better)  # never backwards
    frame = _front(pd.DataFrame(rows), planner.objective)
    cfg = planner.config
    return ParetoFront(frame, metric, planner.objective.name,
                       {"estimator": sens.estimator, "search": cfg.search,
                        "formats": [c.name for c in planner.choices], "seed": cfg.seed},
                       planner.objective.higher_is_better)


def _plan_points(planner, metric: str, values: list[float], measured, progress) -> list[dict]:
    """One row per swept budget; each ILP warm-starts from the previous (cheaper) point's plan."""
    col, cfg = COLUMNS[metric], planner.config
    rows, prev = [], None
    settings = dict(cfg.search_settings or {})
    for v in tqdm(values, desc=f"pareto ({metric})", unit="budget", leave=False,
                  disable=None if progress is None else not progress):
        if cfg.search in ("ilp", "refine", "local") and prev is not None:
            settings["warm_start"] = prev
        budget = Budget(metric, v * (1 + 1e-9))  # a hair over, so a uniform plan fits its own cost
        try:
            p = planner.plan(budget, search_settings=dict(settings))
        except InfeasibleBudget as e:  # e.g. another budget or a solver time limit: the point is missing
            rows.append({"kind": "plan", "label": f"failed: {e}", "budget": v})
            continue
        prev = p.assignments
        cost = p.totals["avg_bits"] if metric == "bits" else p.totals[col]
        rows.append({"kind": "plan", "label": format_metric(metric, v), "budget": v, "cost": cost,
                     "avg_bits": p.totals["avg_bits"], "bytes": p.totals["bytes"],
                     "predicted": p.totals.get("omega"), **measured(p.assignments), "assignments": p.assignments})
    return rows


def _front(frame: pd.DataFrame, objective) -> pd.DataFrame:
    """Drop failed points and repeated plans; mark the non-dominated plans (cost vs measured objective)."""
    frame = frame[frame.cost.notna()]
    # budgets between two plans' costs repeat the cheaper plan: keep each plan once, at its lowest budget
    key_ = frame.assignments.map(lambda a: tuple(sorted(a.items())))
    frame = frame[~(key_.duplicated() & (frame.kind == "plan"))].reset_index(drop=True)
    plans = frame.kind == "plan"
    frame["front"] = False
    frame.loc[plans, "front"] = non_dominated(frame.loc[plans, "cost"].to_numpy(),
                                              as_loss(objective, frame.loc[plans, f"cal_{objective.name}"].to_numpy()))
    return frame
