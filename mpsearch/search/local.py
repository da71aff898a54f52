"""The default search: the cheap proxy proposes, measurements decide.

Every additive optimizer trusts the proxy Ω where it is least reliable: among plans it predicts
to be nearly equal, and wherever layers interact. This searcher spends measurements exactly there:

1. Seeds. The ILP on the proxy gives its best plan, and the same ILP with no-good cuts its
   runners-up (`k_best` plans in all, in predicted order): the plans the proxy can barely tell
   apart. A `warm_start` plan (e.g. a smaller budget's plan in a sweep) is a seed too. Each seed
   is measured on the calibration data (never on held-out data).
2. Local search over *measured* plans from the best seed (exllamav2-style). A move raises one
   tie group to its next costlier format, or exchanges precision between two groups (one a step
   up, one a step down, in cost order); every move keeps every budget. Moves are tried in the
   order of the proxy's predicted change, smallest first (the ones the proxy is least sure are
   bad), and the first measured improvement is accepted; the neighbourhood is then rebuilt.
3. At a measured local optimum, an additive model fitted to every measured plan (the proxy
   rescaled, plus ridge-shrunk per-choice corrections) proposes its best unmeasured plan (the
   ILP again, with every measured plan cut off); an improvement restarts the local search.
4. It stops at a measured local optimum that the model cannot improve (`patience` failed
   proposals in a row, or, once it has as many plans as coefficients, it predicts no unmeasured
   plan within its residual of the best), or after `max_evals` distinct measured plans, or after
   `time_limit` seconds on `clock` (injectable, so tests never depend on wall-clock speed).

The answer is the best plan measured, so it never measures worse than the ILP's plan nor than
the warm start. With `confirm` (a fraction of the calibration samples held back by the planner,
`SearchProblem.confirm` their loss), the search measures on the rest and its plan replaces the
ILP's only if it is better on the held-back samples too: an improvement that is selection noise
(the best of many plans on the same samples) does not replicate there. `Solution.info` says what
was measured, why the search stopped, and how much it gained over the proxy's plan.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..errors import InfeasibleBudget, UsageError
from ._base import Searcher, SearchProblem, Solution, get_searcher, register_searcher
from .ilp import ILPParams, solve_ilp
from .refine import measured_loss


def _better(v: float, best: float) -> bool:
    """A strict improvement, beyond float noise (measurements are deterministic on fixed data)."""
    return v < best - 1e-9 * max(1.0, abs(best))


class _Moves:
    """Per tie group: its formats in cost order, cost vectors and proxy Ω, for fast neighbour scans."""

    def __init__(self, problem: SearchProblem):
        self.problem = problem
        self.groups = problem.groups
        self.limits = np.array(list(problem.limits.values()), float)
        self.rows: list[dict[str, np.ndarray]] = []
        for sites, fmts in self.groups:
            self.rows.append({f: sum(problem.row(s, f) for s in sites) for f in fmts})
        self.additive = problem.aggregate.kind == "sum" and not problem._pair_terms

    def _key(self, fmt_row: np.ndarray) -> float:
        return float(fmt_row[1]) if len(fmt_row) > 1 else 0.0

    def _options(self, g: int, cur: str) -> tuple[list[str], list[str]]:
        """(the next costlier format and any of equal cost, the next cheaper format): moves one step
        in cost order, so a neighbourhood grows linearly in the formats (the fitted model, not the
        moves, makes the long jumps)."""
        rows = self.rows[g]
        c = self._key(rows[cur])
        costlier = sorted((f for f in rows if self._key(rows[f]) > c), key=lambda f: self._key(rows[f]))
        cheaper = sorted((f for f in rows if self._key(rows[f]) < c), key=lambda f: -self._key(rows[f]))
        lateral = [f for f in rows if f != cur and self._key(rows[f]) == c]
        return costlier[:1] + lateral, cheaper[:1]

    def neighbours(self, plan: dict[str, str]) -> list[tuple[float, dict[str, str]]]:
        """(proxy change, plan) for every move of `plan` that fits, smallest predicted change first."""
        cur = [plan[sites[0]] for sites, _ in self.groups]
        total = sum(self.rows[g][f] for g, f in enumerate(cur))
        slack = self.limits * (1 + 1e-9) + 1e-12 - total[1:]
        opts = [self._options(g, f) for g, f in enumerate(cur)]
        moves: list[tuple[tuple[int, str], ...]] = []
        for g, (up, _) in enumerate(opts):
            moves += [((g, f),) for f in up]
        for a, (up, _) in enumerate(opts):
            for b, (_, down) in enumerate(opts):
                if a != b:
                    moves += [((a, fa), (b, fb)) for fa in up for fb in down]
        out = []
        base = None if self.additive else self.problem.predicted(plan)
        for move in moves:
            delta = sum(self.rows[g][f] - self.rows[g][cur[g]] for g, f in move)
            if np.any(delta[1:] > slack):
                continue
            new = dict(plan)
            for g, f in move:
                for s in self.groups[g][0]:
                    new[s] = f
            change = float(delta[0]) if self.additive else self.problem.predicted(new) - base
            out.append((change, new))
        out.sort(key=lambda t: t[0])  # stable: ties keep the (deterministic) generation order
        return out


def local_search(problem: SearchProblem, *, max_evals: int = 100, time_limit: float | None = None,
                 k_best: int = 4, patience: int = 5, clock: Callable[[], float] = time.perf_counter,
                 warm_start: dict[str, str] | None = None, progress: bool | None = None,
                 **ilp_settings) -> Solution:
    """ILP seeds (k best on the proxy), then measured local search; see the module docstring.
    `max_evals` counts distinct measured plans (cached ones are free); `history` has one row per
    measured plan, in order. Long because the seed, move and fitted-model stages share one
    evaluation budget, clock and history."""
    if max_evals < 1:
        raise UsageError("the local search needs at least one evaluation (of the ILP's plan); raise max_evals")
    if k_best < 1:
        raise UsageError("k_best must be at least 1 (the ILP's plan)")
    if problem.evaluate is None:  # plain tables, no data: nothing to measure, the proxy's plan is the answer
        return solve_ilp(problem, **ilp_settings)
    loss = measured_loss(problem, "local")
    t0, w0 = clock(), time.perf_counter()
    used0 = loss.measurements
    spent = lambda: loss.measurements - used0  # noqa: E731
    out_of_time = lambda: time_limit is not None and clock() - t0 >= time_limit  # noqa: E731
    history: list[dict] = []
    bar = tqdm(total=max_evals, desc="local search", unit="eval", leave=False,
               disable=None if progress is None else not progress)

    def measure(assign: dict[str, str], stage: str) -> float:
        new = not loss.known(assign)
        v = loss(assign)
        if new:
            bar.update(1)
            history.append({"step": len(history), "stage": stage, "measured": v,
                            "predicted": problem.predicted(assign),
                            **{k: problem.totals(assign)[k] for k in problem.limits}, "assignments": dict(assign)})
        return v

    # 1. seeds: the warm start, the proxy's best plan and its runners-up
    ilp = solve_ilp(problem, warm_start=warm_start, **ilp_settings)
    seeds = [(ilp.assignments, "ilp")]
    if warm_start is not None and set(warm_start) >= set(problem.sites) and problem.fits(warm_start):
        seeds.append(({s: warm_start[s] for s in problem.sites}, "warm start"))
    found = [ilp.assignments]
    for k in range(2, k_best + 1):
        if len(found) >= min(k_best, max_evals):
            break
        try:
            nxt = solve_ilp(problem, exclude=found, **ilp_settings)
        except InfeasibleBudget:  # fewer than k plans fit: all of them are seeds
            break
        found.append(nxt.assignments)
        seeds.append((nxt.assignments, f"ilp #{k}"))
    best, best_v, ilp_v = None, math.inf, math.nan
    stopped = "local optimum"
    for assign, stage in seeds:
        if best is not None and not loss.known(assign):  # the ILP's plan is always measured
            if spent() >= max_evals:
                stopped = "max_evals"
            elif out_of_time():
                stopped = "time_limit"
            if stopped != "local optimum":
                break
        v = measure(assign, stage)
        if stage == "ilp":
            ilp_v = v
        if best is None or _better(v, best_v):
            best, best_v = assign, v

    # 2./3. measured local search, then the fitted model's best unmeasured plan, until neither improves
    moves = _Moves(problem)
    accepted, left, proposed, fails = 0, 0, 0, 0
    fit_rmse = math.nan

    def budget_left() -> bool:
        nonlocal stopped
        if spent() >= max_evals:
            stopped = "max_evals"
        elif out_of_time():
            stopped = "time_limit"
        return stopped == "local optimum"

    while stopped == "local optimum":
        cands = moves.neighbours(best)
        improved = False
        for i, (_, cand) in enumerate(cands):
            if not loss.known(cand) and not budget_left():
                left = sum(not loss.known(c) for _, c in cands[i:])
                break
            v = measure(cand, "move")
            if _better(v, best_v):
                best, best_v, improved = cand, v, True
                accepted += 1
                break
        if improved or stopped != "local optimum":
            continue
        # a measured local optimum: ask the model fitted to every measured plan for a better plan
        fit = _fitted_problem(problem, history)
        if fit is None or not budget_left():
            break
        fitted, fit_rmse = fit
        try:
            prop = solve_ilp(fitted, exclude=[h["assignments"] for h in history], **ilp_settings)
        except InfeasibleBudget:  # every plan that fits was measured
            break
        determined = len(history) >= fitted.table.shape[0] + 2  # at least as many plans as coefficients
        if fails >= patience or (determined and prop.objective > best_v + fit_rmse):
            break  # the model's proposals keep failing, or it is sure no unmeasured plan beats the best
        proposed += 1
        v = measure(prop.assignments, "fitted model")
        if _better(v, best_v):
            best, best_v, fails = prop.assignments, v, 0
        else:
            fails += 1
    left = left or sum(not loss.known(c) for _, c in moves.neighbours(best))
    bar.close()
    best, best_v, confirmed = _confirmed(problem, best, best_v, ilp.assignments, ilp_v)
    info = {"searcher": "local", "evaluations": spent(), "max_evals": max_evals, "stopped": stopped,
            "seeds": len(seeds), "moves_accepted": accepted, "model_proposals": proposed,
            "unmeasured_neighbours": left, "fit_rmse": fit_rmse,
            "ilp_measured": ilp_v, "best_measured": best_v, "gain_over_ilp": ilp_v - best_v, **confirmed}
    return Solution(best, stopped.replace(" ", "_"), problem.predicted(best), math.nan, time.perf_counter() - w0,
                    problem.totals(best), f"local/{ilp.solver}", measured=best_v,
                    history=pd.DataFrame(history), info=info)


def _confirmed(problem: SearchProblem, best: dict[str, str], best_v: float, ilp: dict[str, str],
               ilp_v: float) -> tuple[dict[str, str], float, dict]:
    """(plan, its measured loss, report): the search's plan if `problem.confirm` (held-back samples)
    also measures it better than the ILP's plan, else the ILP's plan; unchanged without `confirm`."""
    if problem.confirm is None or best == ilp:
        return best, best_v, {}
    held = {"search": float(problem.confirm(best)), "ilp": float(problem.confirm(ilp))}
    ok = _better(held["search"], held["ilp"])
    report = {"confirm_search": held["search"], "confirm_ilp": held["ilp"],
              "confirmed": ok}
    return (best, best_v, report) if ok else (ilp, ilp_v, report)


def _fitted_problem(problem: SearchProblem, history: list[dict], ridge: float = 1.0):
    """The problem with Ω replaced by an additive model fitted to the measured plans:
    loss ≈ b + α·Ω_proxy(plan) + Σ_groups δ(group, format), δ ridge-shrunk to 0 (so unmeasured
    choices fall back to the rescaled proxy). Returns (problem, residual RMS) or None if too few plans."""
    if len(history) < 3 or problem.aggregate.kind != "sum":
        return None
    groups = problem.groups
    index = {(g, f): j for j, (g, f) in enumerate((g, f) for g, (_, fmts) in enumerate(groups) for f in fmts)}
    om = {(g, f): sum(problem.row(s, f)[0] for s in sites) for g, (sites, fmts) in enumerate(groups) for f in fmts}
    n = len(history)
    X = np.zeros((n, 2 + len(index)))
    y = np.array([h["measured"] for h in history], float)
    for i, h in enumerate(history):
        a = h["assignments"]
        X[i, 0] = 1.0
        for g, (sites, _) in enumerate(groups):
            X[i, 1] += om[(g, a[sites[0]])]
            X[i, 2 + index[(g, a[sites[0]])]] = 1.0
    scale = max(float(np.abs(X[:, 1]).max()), 1e-300)  # α's column on the scale of the one-hots
    X[:, 1] /= scale
    reg = np.zeros((len(index), X.shape[1]))
    reg[:, 2:] = math.sqrt(ridge) * np.eye(len(index))
    coef = np.linalg.lstsq(np.vstack([X, reg]), np.concatenate([y, np.zeros(len(index))]), rcond=None)[0]
    rmse = float(np.sqrt(np.mean((X @ coef - y) ** 2)))
    alpha = coef[1] / scale
    theta = {k: alpha * om[k] + coef[2 + j] for k, j in index.items()}
    where = {s: g for g, (sites, _) in enumerate(groups) for s in sites}
    size = {g: len(sites) for g, (sites, _) in enumerate(groups)}
    table = problem.table.copy()
    table["omega"] = [theta[(where[s], f)] / size[where[s]] + coef[0] / len(groups) if (where[s], f) in theta
                      else o for s, f, o in zip(table.site, table.format, table.omega)]
    return SearchProblem(table, problem.limits, problem.ties, seed=problem.seed), rmse


def held_back(problem: SearchProblem, searcher: Searcher, data, loss_on) -> SearchProblem:
    """The problem a `local` searcher with `confirm` > 0 gets: `evaluate` on the calibration samples
    but a seeded `confirm` fraction, `confirm` on those (`loss_on(data)` builds each loss); else
    `problem` itself. Needs at least two samples on each side."""
    frac = getattr(searcher, "confirm", 0.0) if isinstance(searcher, LocalSearch) else 0.0
    if not frac or problem.evaluate is None:
        return problem
    k = round(frac * data.num_samples)
    if k < 2 or data.num_samples - k < 2:
        raise UsageError(f"confirm={frac} holds back {k} of {data.num_samples} calibration samples; give more "
                         "data or a confirm fraction leaving at least 2 on each side")
    back, rest = data.split(k, seed=problem.seed)
    return replace(problem, evaluate=loss_on(rest), confirm=loss_on(back))


def with_budget(settings: dict | None, max_evals: int | None, time_limit: float | None) -> dict:
    """Searcher settings plus the measured search's budget (`max_evals`, `time_limit`), checked before
    any estimate runs (the API's keywords and the CLI's --max-evals/--time-limit)."""
    if max_evals is not None and max_evals < 1:
        raise UsageError(f"max_evals (--max-evals) must be at least 1 (the ILP's plan is always measured), "
                         f"got {max_evals}")
    extra = {"max_evals": max_evals, "time_limit": time_limit}
    return dict(settings or {}) | {k: v for k, v in extra.items() if v is not None}


def for_bisection(searcher: Searcher) -> Searcher:
    """The searcher a --max-drop bisection runs at each budget it tries: the plain ILP for `local`
    (every step is measured by the drop check anyway; a measured search per step would multiply the
    cost by the number of steps), else the searcher itself. `polish` then runs `local` once."""
    if not isinstance(searcher, LocalSearch):
        return searcher
    keep = {"solver": searcher.solver, "threads": searcher.threads}
    return get_searcher("ilp", **keep, **({} if searcher.aggregate is None else {"aggregate": searcher.aggregate}))


def polish(problem: SearchProblem, searcher: Searcher, sol: Solution, accepts) -> Solution:
    """The local search at the bisection's accepted cost, warm-started from its plan; its plan is
    kept only if it still passes the tolerance (`accepts`). The bisection's history is kept."""
    if not isinstance(searcher, LocalSearch) or problem.evaluate is None:
        return sol
    better = LocalSearch(**(searcher.get_params() | {"warm_start": sol.assignments})).search(problem)
    if better.assignments == sol.assignments or not accepts(better.assignments):
        return replace(sol, info=better.info | {"kept": "bisection plan"})
    return replace(better, history=sol.history, info=better.info | {"kept": "local search plan"})


def search_report(sol: Solution, measured: dict, objective: str, higher_is_better: bool) -> dict:
    """`plan.measured['search_summary']`: what the search measured, and how far the returned plan
    (after the uniform guard) is from the best plan the search measured (0 = it is that plan)."""
    info = dict(sol.info)
    plan = measured.get("plan", {}).get(objective)
    if plan is not None and sol.measured is not None:
        loss = -plan if higher_is_better else plan
        info["plan_measured"] = loss
        info["plan_minus_best"] = loss - sol.measured
    return info


@register_searcher
@dataclass(eq=False)
class LocalSearch(ILPParams, Searcher):
    """The ILP on the proxy, its k best plans measured, then a measured local search.
    `max_evals` (distinct plans measured), `time_limit` (seconds, default none), `k_best`, `patience`
    (failed fitted-model proposals before stopping), `clock` (a callable returning seconds, for tests),
    `confirm` (fraction of calibration samples held back to confirm the plan; 0 = off), and the
    ILP's solver, threads and warm_start."""

    name = "local"
    max_evals: int = 100
    k_best: int = 4
    patience: int = 5
    clock: Any = None
    progress: bool | None = None
    confirm: float = 0.0  # fraction of the calibration samples the planner holds back to confirm with

    def search(self, problem: SearchProblem) -> Solution:
        p = self.search_params()
        clock = p.pop("clock") or time.perf_counter
        if not 0.0 <= p.pop("confirm") < 1.0:
            raise UsageError(f"confirm is the fraction of calibration samples held back, in [0, 1); got {self.confirm}")
        return local_search(self.prepare(problem), clock=clock, **p)
