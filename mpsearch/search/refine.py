"""Close the additivity gap: solve, measure the plan, measure the interactions it ignored, re-solve.

Every peer's solver assumes per-site damage adds up; it does not (pairwise effects, and at high
bits the proxy's noise exceeds the differences it ranks). Each round here measures, for the sites
the current plan quantizes, the single-site terms and the pairwise terms (CLADO) at the plan's
format and its cost neighbours, rescales the unmeasured proxy Ω onto the measured scale (least
squares through the origin over the measured rows), re-solves the ILP exactly with the pairwise
terms, and measures the new plan. The best *measured* plan wins. Every model evaluation counts
against `measurements`, the budget the user sets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import UsageError
from ..formats import get_choice
from ..sensitivity.pairwise import COLUMNS, CachedLoss, interaction_terms, rank_pairs
from ._base import Searcher, SearchProblem, Solution, register_searcher
from .ilp import ILPParams, solve_ilp


def measured_loss(problem: SearchProblem, searcher: str) -> CachedLoss:
    """The problem's evaluate as a cached, counting loss (shared by every searcher that measures)."""
    if problem.evaluate is None:
        raise UsageError(f"search {searcher!r} measures plans and needs calibration data; "
                         "pass data to plan() or set SearchProblem.evaluate")
    if not isinstance(problem.evaluate, CachedLoss):
        problem.evaluate = CachedLoss(problem.evaluate)
    return problem.evaluate


def _is_full(fmt: str) -> bool:
    try:
        return get_choice(fmt).weight.is_full_precision
    except Exception:  # noqa: BLE001 - names outside the format registry (plain tables) are never "16-bit"
        return False


def _neighbours(problem: SearchProblem, site: str, fmt: str, width: int | None) -> list[str]:
    """The plan's format and up to `width` formats either side of it in cost order (16-bit excluded);
    every format when `width` is None."""
    k = 1 if problem.limits else 0  # the first budget's cost column (row = [omega, *limits])
    fmts = sorted(problem.formats[site], key=lambda f: problem.row(site, f)[k])
    i = fmts.index(fmt)
    near = fmts if width is None else fmts[max(0, i - width): i + width + 1]
    return [f for f in near if not _is_full(f)]


def _fit_scale(proxy: np.ndarray, meas: np.ndarray) -> float | None:
    """Least-squares α with meas ≈ α·proxy (through the origin), over rows with proxy > 0."""
    ok = proxy > 0
    if not ok.any():
        return None
    alpha = float((proxy[ok] * meas[ok]).sum() / (proxy[ok] ** 2).sum())
    return alpha if alpha > 0 else None


def _rescaled(problem: SearchProblem, singles: dict[tuple[str, str], float]) -> tuple[pd.DataFrame, float]:
    """The table with measured Ω where measured and α_f·proxy elsewhere: α_f fit per format on that
    format's measured rows (the proxy's error depends on the format: a quadratic model fails first at
    2 bits), falling back to one α over all measured rows."""
    t = problem.table.copy()
    keys = list(singles)
    proxy = np.array([problem.row(s, f)[0] for s, f in keys])
    meas = np.array([singles[k] for k in keys])
    alpha = _fit_scale(proxy, meas) or 1.0
    per_format = {}
    for f in {f for _, f in keys}:
        idx = np.array([k[1] == f for k in keys])
        per_format[f] = _fit_scale(proxy[idx], meas[idx]) or alpha
    t["omega"] = [singles.get((s, f), per_format.get(f, alpha) * o) for s, f, o in zip(t.site, t.format, t.omega)]
    return t, alpha


def refine(problem: SearchProblem, *, measurements: int = 60, width: int | None = None, max_sites: int = 12,
           rounds: int = 6, progress: bool | None = None, **ilp_settings) -> Solution:
    """ILP, then rounds of measured pairwise refinement within `measurements` model evaluations.
    `history` has one row per measured plan: its measured loss and the objective its model predicted."""
    if measurements < 1:
        raise UsageError("refine needs at least one measurement (of the ILP's plan); raise measurements")
    loss = measured_loss(problem, "refine")
    t0 = time.perf_counter()
    used0 = loss.measurements
    left = lambda: measurements - (loss.measurements - used0)  # noqa: E731
    sol = solve_ilp(problem, **ilp_settings)
    ilp_settings.pop("warm_start", None)
    history = []

    bar = tqdm(total=measurements, desc="refine", unit="eval", leave=False,
               disable=None if progress is None else not progress)

    def record(assign: dict[str, str], stage: str, predicted: float) -> float:
        v = loss(assign)
        bar.update(loss.measurements - used0 - bar.n)
        history.append({"round": len(history), "stage": stage, "measured": v, "predicted": predicted,
                        **{k: problem.totals(assign)[k] for k in problem.limits},
                        "assignments": dict(assign)})
        return v

    best, best_v = sol.assignments, record(sol.assignments, "ilp", sol.objective)
    singles, pairs_done = {}, set()
    given = [] if problem.pairwise is None else [problem.pairwise[COLUMNS]]
    terms: list[pd.DataFrame] = []

    def try_plan(table: pd.DataFrame, alpha: float, stage: str) -> bool:
        """Solve the refined model; measure its plan if it is new. True if something was measured."""
        nonlocal best, best_v
        parts = [g.assign(omega=g.omega * alpha) for g in given] + terms  # given terms are in proxy units
        pw = pd.concat(parts, ignore_index=True) if parts else None
        nxt = solve_ilp(SearchProblem(table, problem.limits, problem.ties, pw, seed=problem.seed),
                        warm_start=best, **ilp_settings)
        if loss.known(nxt.assignments) or left() < 1:
            return False
        v = record(nxt.assignments, stage, nxt.objective)
        if v < best_v:
            best, best_v = nxt.assignments, v
        return True

    for _ in range(rounds):
        if left() <= 1:
            break
        changed = [s for s in problem.sites if not _is_full(best[s])]
        changed.sort(key=lambda s: -problem.row(s, best[s])[0])
        changed = changed[:max_sites]
        # every format of the changed sites while that costs at most half the budget left, else neighbours
        n_all = sum(len(_neighbours(problem, s, best[s], None)) for s in changed)
        w = width if width is not None else (None if n_all <= left() / 2 else 1)
        cands = {s: _neighbours(problem, s, best[s], w) for s in changed}
        fp = loss({})
        for s, fs in cands.items():
            for f in fs:
                if (s, f) not in singles and left() > 2:  # keep two evaluations for the re-solved plans
                    singles[(s, f)] = loss({s: f}) - fp
        # pairs cost one evaluation per format pair: only the plan's format and its cost neighbours
        cands = {s: [f for f in _neighbours(problem, s, best[s], 1 if width is None else width)
                     if (s, f) in singles] for s in changed}
        table, alpha = _rescaled(problem, singles)
        # the measured singles alone already correct the proxy's scale errors: try that plan first
        moved = try_plan(table, alpha, f"measured singles ({len(singles)})")
        single_frame = pd.DataFrame([{"site": s, "format": f, "omega": v} for (s, f), v in singles.items()
                                     if s in cands], columns=["site", "format", "omega"])
        new_pairs = 0
        for a, b in rank_pairs(changed, single_frame) if len(single_frame) else []:
            cost = sum(not loss.known({a: fa, b: fb}) for fa in cands[a] for fb in cands[b])
            if (a, b) in pairs_done or cost > left() - 1:  # keep one evaluation for the re-solved plan
                continue
            terms.append(interaction_terms(loss, cands, [(a, b)], progress=False))
            pairs_done.add((a, b))
            new_pairs += 1
        if new_pairs:
            moved |= try_plan(table, alpha, f"+ pairwise ({len(pairs_done)} pairs)")
        if not moved and not new_pairs:
            break  # nothing new was learned and no new plan came out: converged
    bar.close()
    hist = pd.DataFrame(history)
    return Solution(best, "measured", problem.predicted(best), float("nan"), time.perf_counter() - t0,
                    problem.totals(best), f"refine/{sol.solver}", measured=best_v, history=hist)


@register_searcher
@dataclass(eq=False)
class RefineSearch(ILPParams, Searcher):
    """ILP + measured pairwise refinement. `measurements`: model evaluations in all; `width`: formats either
    side of the plan's to measure (None: all when affordable, else 1); `max_sites`, `rounds`: per round."""

    name = "refine"
    measurements: int = 60
    width: int | None = None
    max_sites: int = 12
    rounds: int = 6
    progress: bool | None = None

    def search(self, problem: SearchProblem) -> Solution:
        return refine(self.prepare(problem), **self.search_params())
