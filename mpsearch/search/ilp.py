"""Exact integer linear program over per-site choices (HAWQ-V3's formulation, generalized).

Binary x[s,f]; Σ_f x[s,f] = 1 per site; Σ cost_k·x ≤ B_k per budget; tie groups share a format;
minimize Σ Ω·x + Σ Ω_ab·y_ab, where each pairwise product x_a·x_b is linearized exactly by
y ≤ x_a, y ≤ x_b, y ≥ x_a + x_b − 1 (CLADO).
"""

from __future__ import annotations

import math
import time

import pandas as pd
import pulp

from ..errors import InfeasibleBudget, UsageError
from ._base import Searcher, SearchProblem, Solution, register_searcher


def _solver(name: str, time_limit: float | None, threads: int | None):
    if name == "highs":
        if "HiGHS" not in pulp.listSolvers(onlyAvailable=True):
            raise UsageError("solver 'highs' needs the highspy package: pip install highspy")
        return pulp.HiGHS(msg=False, timeLimit=time_limit, gapRel=0.0, threads=threads)
    if name == "cbc":
        return pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=0.0, threads=threads)
    raise UsageError(f"unknown ILP solver {name!r}; use 'cbc' (bundled) or 'highs'")


def solve_ilp(problem: SearchProblem, *, solver: str = "cbc", time_limit: float | None = None,
              threads: int | None = None) -> Solution:
    problem.check_feasible()
    t = problem.table.reset_index(drop=True)
    sites = problem.sites
    lp = pulp.LpProblem("mpsearch", pulp.LpMinimize)
    x = {(r.site, r.format): pulp.LpVariable(f"x{i}", cat="Binary") for i, r in enumerate(t.itertuples())}
    by_site: dict[str, list] = {s: [] for s in sites}
    for (s, _), v in x.items():
        by_site[s].append(v)
    objective = pulp.lpSum(float(om) * x[(s, f)] for s, f, om in zip(t.site, t.format, t.omega))

    if problem.pairwise is not None and len(problem.pairwise):
        terms = []
        for j, r in enumerate(problem.pairwise.itertuples()):
            a, b = (r.site_a, r.format_a), (r.site_b, r.format_b)
            if a not in x or b not in x:
                raise UsageError(f"pairwise term ({a}, {b}) names a (site, format) not in the table")
            y = pulp.LpVariable(f"y{j}", lowBound=0, upBound=1)
            lp += y <= x[a]
            lp += y <= x[b]
            lp += y >= x[a] + x[b] - 1
            terms.append(float(r.omega) * y)
        objective = objective + pulp.lpSum(terms)
    lp += objective

    for s in sites:
        lp += pulp.lpSum(by_site[s]) == 1
    for col, limit in problem.limits.items():
        lp += pulp.lpSum(float(c) * x[(s, f)] for s, f, c in zip(t.site, t.format, t[col])) <= limit
    for group in problem.ties:
        unknown = [s for s in group if s not in by_site]
        if unknown:
            raise UsageError(f"tie group names unknown site(s) {unknown}")
        fmts = set.intersection(*({f for (ss, f) in x if ss == s} for s in group))
        for s in group:
            for (ss, f), v in x.items():
                if ss == s and f not in fmts:
                    lp += v == 0
        for f in fmts:
            for s in group[1:]:
                lp += x[(s, f)] == x[(group[0], f)]

    start = time.perf_counter()
    lp.solve(_solver(solver, time_limit, threads))
    seconds = time.perf_counter() - start
    status = pulp.LpStatus[lp.status]
    if status == "Infeasible":
        raise InfeasibleBudget(
            "the budgets cannot all be met at once (each alone is achievable, together they are not); "
            "relax one of them"
        )
    chosen = {}
    for (s, f), v in x.items():
        if v.value() is not None and v.value() > 0.5:
            chosen[s] = f
    if len(chosen) != len(sites):
        raise InfeasibleBudget(f"the ILP solver found no assignment (status {status}); relax the budgets "
                               "or raise the time limit")
    obj = float(pulp.value(lp.objective))
    optimal = status == "Optimal" and lp.sol_status == pulp.LpSolutionOptimal
    totals = problem.totals(chosen)
    return Solution(chosen, "optimal" if optimal else status.lower(), obj, obj if optimal else math.nan,
                    seconds, totals, solver)


@register_searcher
class ILPSearch(Searcher):
    """Settings: solver ('cbc' | 'highs'), time_limit (seconds), threads."""

    name = "ilp"

    def search(self, problem: SearchProblem) -> Solution:
        return solve_ilp(problem, solver=self.settings.get("solver", "cbc"),
                         time_limit=self.settings.get("time_limit"), threads=self.settings.get("threads"))


def solve(table: pd.DataFrame, budgets: dict[str, float], ties=None, pairwise: pd.DataFrame | None = None,
          *, solver: str = "cbc", time_limit: float | None = None) -> Solution:
    """Solve on plain tables: `table` has site, format, omega and cost columns; `budgets` maps a cost
    column to the limit on its sum over sites."""
    return solve_ilp(SearchProblem(table, dict(budgets), list(ties or []), pairwise), solver=solver,
                     time_limit=time_limit)
