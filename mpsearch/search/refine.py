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

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..formats import get_choice
from ..sensitivity.pairwise import COLUMNS, CachedLoss, interaction_terms, rank_pairs
from ._base import Searcher, SearchProblem, Solution, register_searcher
from .ilp import ILP_OPTIONS, solve_ilp


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


def _neighbours(problem: SearchProblem, site: str, fmt: str, width: int) -> list[str]:
    """The plan's format and up to `width` formats either side of it in cost order (16-bit excluded)."""
    k = 1 if problem.limits else 0  # the first budget's cost column (row = [omega, *limits])
    fmts = sorted(problem.formats[site], key=lambda f: problem.row(site, f)[k])
    i = fmts.index(fmt)
    near = fmts[max(0, i - width): i + width + 1]
    return [f for f in near if not _is_full(f)]


def _rescaled(problem: SearchProblem, singles: dict[tuple[str, str], float]) -> tuple[pd.DataFrame, float]:
    """The table with measured Ω where measured and α·proxy elsewhere (α fit on the measured rows)."""
    t = problem.table.copy()
    proxy = np.array([problem.row(s, f)[0] for s, f in singles])
    meas = np.array(list(singles.values()))
    ok = proxy > 0
    alpha = float((proxy[ok] * meas[ok]).sum() / (proxy[ok] ** 2).sum()) if ok.any() else 1.0
    alpha = max(alpha, 0.0) or 1.0
    key = list(zip(t.site, t.format))
    t["omega"] = [singles.get(k, alpha * o) for k, o in zip(key, t.omega)]
    return t, alpha


def refine(problem: SearchProblem, *, measurements: int = 60, width: int = 1, max_sites: int = 12,
           rounds: int = 6, **ilp_settings) -> Solution:
    """ILP, then rounds of measured pairwise refinement within `measurements` model evaluations."""
    loss = measured_loss(problem, "refine")
    t0 = time.perf_counter()
    used0 = loss.measurements
    left = lambda: measurements - (loss.measurements - used0)  # noqa: E731
    sol = solve_ilp(problem, **ilp_settings)
    ilp_settings.pop("warm_start", None)
    history = []

    def record(assign: dict[str, str], stage: str, predicted: float) -> float:
        v = loss(assign)
        history.append({"round": len(history), "stage": stage, "measured": v, "predicted": predicted,
                        **{k: problem.totals(assign)[k] for k in problem.limits},
                        "assignments": dict(assign)})
        return v

    best, best_v = sol.assignments, record(sol.assignments, "ilp", sol.objective)
    current, singles, pairs_done = sol.assignments, {}, set()
    terms = [] if problem.pairwise is None else [problem.pairwise[COLUMNS]]
    for _ in range(rounds):
        if left() <= 1:
            break
        changed = [s for s in problem.sites if not _is_full(current[s])]
        changed.sort(key=lambda s: -problem.row(s, current[s])[0])
        changed = changed[:max_sites]
        cands = {s: _neighbours(problem, s, current[s], width) for s in changed}
        fp = loss({})
        for s, fs in cands.items():
            for f in fs:
                if (s, f) not in singles and left() > 1:
                    singles[(s, f)] = loss({s: f}) - fp
        cands = {s: [f for f in fs if (s, f) in singles] for s, fs in cands.items()}
        single_frame = pd.DataFrame([{"site": s, "format": f, "omega": v} for (s, f), v in singles.items()
                                     if s in cands], columns=["site", "format", "omega"])
        new_pairs = []
        for a, b in rank_pairs(changed, single_frame) if len(single_frame) else []:
            cost = sum(not loss.known({a: fa, b: fb}) for fa in cands[a] for fb in cands[b])
            if (a, b) in pairs_done or cost > left() - 1:  # keep one evaluation for the re-solved plan
                continue
            new_pairs.append((a, b))
            terms.append(interaction_terms(loss, cands, [(a, b)], progress=False))
            pairs_done.add((a, b))
        table, alpha = _rescaled(problem, singles)
        pw = pd.concat(terms, ignore_index=True) if terms else None
        if pw is not None and problem.pairwise is not None:
            pw.loc[: len(problem.pairwise) - 1, "omega"] *= alpha  # the given terms are in proxy units
        refined = SearchProblem(table, problem.limits, problem.ties, pw, seed=problem.seed)
        nxt = solve_ilp(refined, warm_start=best, **ilp_settings)
        if loss.known(nxt.assignments) or left() < 1:
            current = nxt.assignments
            if not new_pairs:
                break  # nothing new was learned and the plan did not move: converged
            continue
        v = record(nxt.assignments, f"refined ({len(pairs_done)} pairs)", nxt.objective)
        current = nxt.assignments
        if v < best_v:
            best, best_v = nxt.assignments, v
    hist = pd.DataFrame(history)
    return Solution(best, "measured", problem.predicted(best), float("nan"), time.perf_counter() - t0,
                    problem.totals(best), f"refine/{sol.solver}", measured=best_v, history=hist)


@register_searcher
class RefineSearch(Searcher):
    """ILP + measured pairwise refinement. Settings: measurements (model evaluations, default 60),
    width (cost neighbours per site, 1), max_sites (12), rounds (6), solver, time_limit."""

    name = "refine"
    options = ("measurements", "width", "max_sites", "rounds") + ILP_OPTIONS

    def search(self, problem: SearchProblem) -> Solution:
        return refine(self.prepare(problem), **self.settings)
