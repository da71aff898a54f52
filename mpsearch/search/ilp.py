"""Exact integer linear program over per-site choices (HAWQ-V3's formulation, generalized).

Binary x[g,f] per tie group g (tied sites share one set of variables, so ties cost nothing) and
format f; Σ_f x[g,f] = 1; Σ cost_k·x ≤ B_k per budget. The objective is one of
- `sum`:  Σ Ω·x, plus pairwise terms Σ Ω_ab·y_ab with each product x_a·x_b linearized exactly
  (CLADO): y ≥ x_a + x_b − 1 where Ω_ab > 0 and y ≤ x_a, y ≤ x_b where Ω_ab < 0 — the minimizer
  pushes y against the bound it needs, so one side suffices and the optimum is the same;
- `lp:P`: Σ max(Ω, 0)^P·x, the P-th power of the Lp norm (monotone, so the argmin is the same);
- `max`:  an epigraph variable t ≥ Σ_f Ω(s,f)·x[g(s),f] for every site s; minimize t.
The objective is scaled to unit magnitude and budget rows to unit limits so that solver
tolerances mean the same thing for any model; the result is reported on the original scale.
The first solve is scaled by the worst case; when its optimum is far below that (Ω over many decades),
a second, warm-started solve is scaled by the optimum itself, so the solvers' absolute tolerances are
relative to the answer (CBC returned plans 1e-9…1e-2 above the optimum, labelled optimal, before).
HiGHS (highspy, a core dependency) is used when installed, else CBC (bundled with PuLP). When a time
limit stops the solver early, `bound` is the solver's own proven dual bound, never the incumbent; if
it stopped before any incumbent, a greedy plan is returned with the LP relaxation's bound.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import pandas as pd
from scipy import sparse

from ..errors import InfeasibleBudget, UsageError
from ._base import Searcher, SearchProblem, Solution, register_searcher

SOLVERS = ("auto", "highs", "cbc")


@dataclass(eq=False)
class ILPParams:
    """The exact solver's settings, shared by every searcher that solves ILPs inside. `warm_start`: a
    complete assignment that fits, handed to the solver as its first incumbent."""

    solver: Literal["auto", "highs", "cbc"] = "auto"
    time_limit: float | None = None
    threads: int | None = None
    warm_start: dict | None = None
    verify: bool = False  # also solve with the other backend and keep the better answer (see _verified)

    def ilp_params(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(ILPParams)}


@dataclass
class _Matrix:
    """min cᵀz s.t. row_lo ≤ A z ≤ row_hi, lo ≤ z ≤ hi, z_i integer where `integer`."""

    c: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    integer: np.ndarray
    A: sparse.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    scale: float                       # objective was divided by this
    x_cols: list[list[int]]            # per group, the column of each of its formats
    pair_cols: list[tuple[int, int, int]]  # (y column, x_a column, x_b column)
    t_col: int | None                  # epigraph column for `max`

    def start(self, groups, assignments: dict[str, str], problem: SearchProblem) -> np.ndarray:
        """A full primal vector for a warm start from a complete assignment."""
        z = np.zeros(len(self.c))
        for (sites, fmts), cols in zip(groups, self.x_cols):
            f = assignments.get(sites[0])
            if f in fmts:
                z[cols[fmts.index(f)]] = 1.0
        for y, a, b in self.pair_cols:
            z[y] = z[a] * z[b]
        if self.t_col is not None:
            z[self.t_col] = max(problem.row(s, f)[0] for s, f in assignments.items()) / self.scale
        return z


def _build(problem: SearchProblem, near: float | None = None, exclude: list[dict[str, str]] = ()) -> _Matrix:
    agg = problem.aggregate
    groups = problem.groups
    limits = list(problem.limits.items())
    cost: list[float] = []
    x_cols: list[list[int]] = []
    rows: list[tuple[list[int], list[float], float, float]] = []
    budget = [([], []) for _ in limits]
    where: dict[tuple[str, str], int] = {}
    for sites, fmts in groups:
        cols = []
        for f in fmts:
            j = len(cost)
            vals = np.array([problem.row(s, f) for s in sites])  # (sites, 1 + limits)
            cost.append(0.0 if agg.kind == "max" else float(agg.per_site(vals[:, 0]).sum()))
            for k, (_, lim) in enumerate(limits):
                budget[k][0].append(j)
                budget[k][1].append(float(vals[:, 1 + k].sum()) / lim if lim > 0 else float(vals[:, 1 + k].sum()))
            for s in sites:
                where[(s, f)] = j
            cols.append(j)
        x_cols.append(cols)
        rows.append((cols, [1.0] * len(cols), 1.0, 1.0))
    n_x = len(cost)
    integer = [True] * n_x
    for k, (_, lim) in enumerate(limits):
        rows.append((budget[k][0], budget[k][1], -np.inf, 1.0 if lim > 0 else lim))
    for ex in exclude:  # no-good cut: at least one group leaves the excluded assignment (k-best solutions)
        cols = [where[(sites[0], ex[sites[0]])] for sites, _ in groups if (sites[0], ex.get(sites[0])) in where]
        if len(cols) == len(groups):
            rows.append((cols, [1.0] * len(cols), -np.inf, len(cols) - 1.0))

    # pairwise products, merged per unordered column pair
    products: dict[tuple[int, int], float] = {}
    for (sa, fa, sb, fb), om in problem._pair_terms.items():
        a, b = where.get((sa, fa)), where.get((sb, fb))
        if a is None or b is None:
            if (sa, fa) not in problem._rows or (sb, fb) not in problem._rows:
                raise UsageError(f"pairwise term ({sa}, {fa}) × ({sb}, {fb}) names a (site, format) not in the table")
            continue  # a format its tie group cannot take: the product is always 0
        if a == b:
            cost[a] += om  # two tied sites at the same format: x·x = x
            continue
        if any(a in cols and b in cols for cols in x_cols):
            continue  # two formats of one group: never both chosen
        key = (min(a, b), max(a, b))
        products[key] = products.get(key, 0.0) + om
    pair_cols = []
    for (a, b), om in products.items():
        if om == 0:
            continue
        y = len(cost)
        cost.append(om)
        integer.append(False)
        pair_cols.append((y, a, b))
        if om > 0:
            rows.append(([a, b, y], [1.0, 1.0, -1.0], -np.inf, 1.0))
        else:
            rows.append(([y, a], [1.0, -1.0], -np.inf, 0.0))
            rows.append(([y, b], [1.0, -1.0], -np.inf, 0.0))

    t_col = None
    if agg.kind == "max":
        t_col = len(cost)
        cost.append(1.0)
        integer.append(False)
        for sites, fmts in groups:
            for s in sites:
                cols = [where[(s, f)] for f in fmts]
                rows.append((cols + [t_col], [float(problem.row(s, f)[0]) for f in fmts] + [-1.0], -np.inf, 0.0))

    c = np.array(cost)
    # Solvers' optimality tolerances are absolute (~1e-7 on reduced costs): bring the objective to ~1e4
    # so that differences far below the table's resolution still count. The first pass scales by the
    # worst case; when the optimum found is far below it (Ω over many decades: int2 dwarfs the rest),
    # `near` (that pass's objective, in solver units before scaling) rescales the second pass by the
    # optimum itself, so the tolerance is relative to the answer, not to a plan nobody would pick.
    worst = sum(float(np.abs(c[cols]).max()) for cols in x_cols) + float(np.abs(c[n_x:]).sum())
    scale = worst / 1e4 if worst > 0 else 1.0
    if near is not None and 0 < near < worst:
        scale = near / 1e6  # the optimum at 1e6: 1e-7 tolerances are 1e-13 of it
    c = c / scale
    if t_col is not None:  # the epigraph rows carry Ω too: rescale them with the objective
        for i, (cols, vals, lo, hi) in enumerate(rows):
            if cols and cols[-1] == t_col:
                rows[i] = (cols, [v / scale for v in vals[:-1]] + [-1.0], lo, hi)
    n = len(c)
    lo = np.zeros(n)
    hi = np.ones(n)
    if t_col is not None:
        lo[t_col], hi[t_col] = -np.inf, np.inf
    indptr, indices, data = [0], [], []
    for cols, vals, _, _ in rows:
        indices.extend(cols)
        data.extend(vals)
        indptr.append(len(indices))
    A = sparse.csr_matrix((data, indices, indptr), shape=(len(rows), n))
    return _Matrix(c, lo, hi, np.array(integer), A, np.array([r[2] for r in rows], float),
                   np.array([r[3] for r in rows], float), scale, x_cols, pair_cols, t_col)


@dataclass
class _Result:
    z: np.ndarray | None
    status: str      # "optimal" | "time_limit" | "infeasible" | other solver words
    bound: float     # the solver's proven lower bound, scaled objective units (nan if none)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level writes to stdout (HiGHS prints a banner when its first instance is made)."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (AttributeError, OSError, ValueError):
        yield
        return
    fd = 1
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@functools.cache
def _highspy():
    try:
        import highspy
    except ImportError:
        return None
    with _quiet_stdout():
        highspy.Highs()
    return highspy


def _solve_highs(m: _Matrix, time_limit, threads, start) -> _Result:
    hs = _highspy()
    h = hs.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    h.setOptionValue("mip_abs_gap", 0.0)
    h.setOptionValue("random_seed", 0)
    # a budget is a hard limit: do not let the default 1e-6 feasibility slack buy a slightly better plan
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    if threads is not None:
        h.setOptionValue("threads", int(threads))
    lp = hs.HighsLp()
    lp.num_col_, lp.num_row_ = len(m.c), m.A.shape[0]
    lp.col_cost_ = m.c
    lp.col_lower_ = np.where(np.isinf(m.lo), -hs.kHighsInf, m.lo)
    lp.col_upper_ = np.where(np.isinf(m.hi), hs.kHighsInf, m.hi)
    lp.row_lower_ = np.where(np.isinf(m.row_lo), -hs.kHighsInf, m.row_lo)
    lp.row_upper_ = np.where(np.isinf(m.row_hi), hs.kHighsInf, m.row_hi)
    csc = m.A.tocsc()
    lp.a_matrix_.format_ = hs.MatrixFormat.kColwise
    lp.a_matrix_.start_ = csc.indptr
    lp.a_matrix_.index_ = csc.indices
    lp.a_matrix_.value_ = csc.data
    lp.integrality_ = [hs.HighsVarType.kInteger if i else hs.HighsVarType.kContinuous for i in m.integer]
    h.passModel(lp)
    if start is not None:
        sol = hs.HighsSolution()
        sol.col_value = list(start)
        sol.value_valid = True
        h.setSolution(sol)
    h.run()
    ms = h.getModelStatus()
    info = h.getInfo()
    S = hs.HighsModelStatus
    status = {S.kOptimal: "optimal", S.kInfeasible: "infeasible", S.kTimeLimit: "time_limit",
              S.kUnboundedOrInfeasible: "infeasible"}.get(ms, h.modelStatusToString(ms).lower())
    has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
    z = np.array(h.getSolution().col_value) if has_sol else None
    bound = float(info.mip_dual_bound)
    if not math.isfinite(bound):
        bound = math.nan
    return _Result(z, status, bound)


_CBC_BOUND = re.compile(r"^Lower bound:\s*(\S+)", re.M)
_CBC_RESULT = re.compile(r"^Result - (.*)$", re.M)


def _solve_cbc(m: _Matrix, time_limit, threads, start) -> _Result:
    import pulp

    lp = pulp.LpProblem("mpsearch", pulp.LpMinimize)
    new_var = getattr(lp, "add_variable", None) or pulp.LpVariable  # PuLP >= 3.3 attaches variables to the model
    z = [new_var(f"z{j}", None if np.isinf(m.lo[j]) else m.lo[j], None if np.isinf(m.hi[j]) else m.hi[j],
                 "Integer" if m.integer[j] else "Continuous") for j in range(len(m.c))]
    lp += pulp.LpAffineExpression([(z[j], float(v)) for j, v in enumerate(m.c) if v != 0])
    for i in range(m.A.shape[0]):
        lo_, hi_ = m.A.indptr[i], m.A.indptr[i + 1]
        expr = pulp.LpAffineExpression([(z[j], float(v)) for j, v in zip(m.A.indices[lo_:hi_], m.A.data[lo_:hi_])])
        if m.row_lo[i] == m.row_hi[i]:
            lp += pulp.LpConstraint(expr, pulp.LpConstraintEQ, f"r{i}", float(m.row_hi[i]))
        else:
            lp += pulp.LpConstraint(expr, pulp.LpConstraintLE, f"r{i}", float(m.row_hi[i]))
    if start is not None:
        for v, s in zip(z, start):
            v.setInitialValue(float(s))
    with tempfile.TemporaryDirectory(prefix="mpsearch-cbc-") as tmp:
        log = os.path.join(tmp, "cbc.log")
        with warnings.catch_warnings():  # PuLP 3.3+ deprecates its bundled CBC; it is still the one we can count on
            warnings.simplefilter("ignore", DeprecationWarning)
            solver = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=0.0, gapAbs=0.0, threads=threads,
                                       warmStart=start is not None, logPath=log, options=["primalT 1e-9"])
        lp.solve(solver)
        text = open(log, encoding="utf-8", errors="replace").read()
    result = (_CBC_RESULT.search(text) or [None, ""])[1].lower()
    if "infeasible" in result:
        return _Result(None, "infeasible", math.nan)
    found = lp.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
    values = np.array([v.value() or 0.0 for v in z]) if found else None
    if result.startswith("optimal"):
        return _Result(values, "optimal", float(pulp.value(lp.objective)))
    b = _CBC_BOUND.search(text)
    bound = float(b.group(1)) if b else math.nan
    status = "time_limit" if "time" in result else (result or pulp.LpStatus[lp.status].lower())
    return _Result(values, status, bound)


def available_solvers() -> list[str]:
    """The ILP backends usable here: CBC always (bundled with PuLP), HiGHS when highspy is installed."""
    return ["cbc"] + (["highs"] if _highspy() is not None else [])


def _pick(solver: str) -> str:
    if solver not in SOLVERS:
        raise UsageError(f"unknown ILP solver {solver!r}; use {', '.join(SOLVERS)}")
    if solver == "highs" and _highspy() is None:
        raise UsageError("solver 'highs' needs the highspy package: pip install highspy (or use solver='cbc')")
    if solver == "auto":
        return "highs" if _highspy() is not None else "cbc"
    return solver


def solve_ilp(problem: SearchProblem, *, solver: str = "auto", time_limit: float | None = None,
              threads: int | None = None, warm_start: dict[str, str] | None = None,
              exclude: list[dict[str, str]] = (), verify: bool = False) -> Solution:
    """Minimize the problem's objective exactly. `warm_start`: a complete assignment that fits (e.g.
    the previous point of a budget sweep) handed to the solver as its first incumbent. `exclude`:
    complete assignments the answer must differ from (no-good cuts: solving again with each answer
    excluded gives the k best plans in order)."""
    problem.check_feasible()
    name = _pick(solver)
    t0 = time.perf_counter()
    start = warm_start if warm_start is not None and set(warm_start) >= set(problem.sites) \
        and problem.fits(warm_start) and warm_start not in list(exclude) else None
    work, near = problem, None
    for _ in range(4):
        chosen, r, m = _solve_once(work, name, time_limit, threads, start, exclude=exclude)
        if near is None and r.status == "optimal" and problem.fits(chosen):
            first = _solver_objective(m, r.z)  # scaled units: the worst case is ~1e4
            if 0 < first < 1e3:  # the optimum is under 10% of the worst case: re-solve scaled by it (`_build`)
                near = first * m.scale
                chosen, r, m = _solve_once(work, name, time_limit, threads, chosen, near=near, exclude=exclude)
        over = {c: problem.totals(chosen)[c] / lim - 1 for c, lim in problem.limits.items() if lim > 0}
        if problem.fits(chosen):
            break
        # the solver's feasibility tolerance let a budget slip by a hair: tighten that budget and re-solve
        work = work.with_limits({c: lim * (1 - 2 * max(over.get(c, 0.0), 1e-12)) if over.get(c, 0) > 0 else lim
                                 for c, lim in work.limits.items()})
    else:
        raise InfeasibleBudget("the ILP solver returned plans that exceed the budget by its tolerance; relax a "
                               "budget slightly")
    seconds = time.perf_counter() - t0
    objective = problem.predicted(chosen)
    raw_bound = problem.aggregate.from_solver(r.bound * m.scale) if not math.isnan(r.bound) else math.nan
    bound = min(raw_bound, objective) if not math.isnan(raw_bound) else math.nan
    sol = Solution(chosen, r.status, objective, bound, seconds, problem.totals(chosen), name)
    return _verified(sol, problem, m, time_limit, threads, exclude, verify)


def _verified(sol: Solution, problem: SearchProblem, m: _Matrix, time_limit, threads, exclude,
              verify: bool) -> Solution:
    """Check the answer instead of trusting the solver's status. The LP relaxation is a lower bound that
    no solver's bookkeeping enters: an objective below it means the model handed to the solver is wrong
    (an error). With `verify`, the other backend solves the same problem; a strictly better answer from
    it means the first one's "optimal" was not (CBC's on badly scaled tables), and the better one is kept
    with a warning. Both land in `info['verification']`."""
    other = {"highs": "cbc", "cbc": "highs"}[sol.solver]
    alt = solve_ilp(problem, solver=other, time_limit=time_limit, threads=threads, exclude=exclude) \
        if verify and other in available_solvers() else None
    if alt is not None:  # the same problem's LP relaxation, solved once: the other backend's check has it
        lp = alt.info["verification"]["lp_bound"]
    else:
        lp = _lp_bound(m) if m.t_col is None else math.nan  # `max`'s epigraph carries Ω in other units: not checked
        lp = problem.aggregate.from_solver(lp * m.scale) if not math.isnan(lp) else math.nan
    if not math.isnan(lp) and sol.objective < lp - 1e-6 * max(abs(lp), 1e-12):
        raise RuntimeError(f"ILP answer {sol.objective:.6g} is below its LP relaxation {lp:.6g}: the solver's "
                           "model is inconsistent (a bug; please report it with the table)")
    check = {"lp_bound": lp}
    if alt is not None:
        check.update(other=other, other_objective=alt.objective)
        if alt.objective < sol.objective - 1e-9 * max(abs(sol.objective), 1e-300):
            warnings.warn(f"ILP solver {sol.solver} returned {sol.objective:.6g}, {other} found "
                          f"{alt.objective:.6g}; keeping {other}'s plan", stacklevel=2)
            sol = alt
    if not math.isnan(lp):
        sol.bound = max(sol.bound, min(lp, sol.objective)) if not math.isnan(sol.bound) else min(lp, sol.objective)
    sol.info = {**sol.info, "verification": check}
    return sol


def _solver_objective(m: _Matrix, z: np.ndarray) -> float:
    return float(m.c @ z)


def _solve_once(problem: SearchProblem, name: str, time_limit, threads, start, near: float | None = None, exclude=()):
    m = _build(problem, near, exclude)
    groups = problem.groups
    r = (_solve_highs if name == "highs" else _solve_cbc)(m, time_limit, threads,
                                                          None if start is None else m.start(groups, start, problem))
    if r.status == "infeasible":
        raise InfeasibleBudget("the budgets cannot all be met at once (each alone is achievable, together they "
                               "are not); relax one of them")
    if r.z is None:  # stopped before any incumbent: a feasible plan is still easy to make
        z = _greedy(m)
        if z is None:
            raise InfeasibleBudget(f"the ILP solver found no assignment (status {r.status}) within the time limit "
                                   f"({time_limit}s) and the greedy fallback none either; raise the time limit")
        bound = r.bound if not math.isnan(r.bound) else _lp_bound(m)
        r = _Result(z, r.status, bound)
    elif m.t_col is None and not m.pair_cols:
        r = _Result(_polish(m, r.z), r.status, r.bound)
    chosen = {}
    for (sites, fmts), cols in zip(groups, m.x_cols):
        f = fmts[int(np.argmax(r.z[cols]))]
        for s in sites:
            chosen[s] = f
    return chosen, r, m


def _budget_rows(m: _Matrix) -> list[int]:
    """Rows of the budget constraints (after the one-format-per-group rows, before pair/epigraph rows)."""
    g = len(m.x_cols)
    return [i for i in range(g, m.A.shape[0]) if m.A.indptr[i + 1] > m.A.indptr[i]
            and set(m.A.indices[m.A.indptr[i]:m.A.indptr[i + 1]]) <= {j for cols in m.x_cols for j in cols}
            and m.row_lo[i] == -np.inf]


def _greedy(m: _Matrix) -> np.ndarray | None:
    """A feasible assignment without the solver: start every group at its cheapest format (by the sum of
    its normalized budget rows), then take the upgrade with the best Ω saved per budget spent while it
    fits. None if even the cheapest start does not fit."""
    rows = _budget_rows(m)
    B = m.A[rows].toarray() if rows else np.zeros((0, len(m.c)))
    hi = m.row_hi[rows]
    weight = B.sum(0)
    pick = [cols[int(np.argmin(weight[cols]))] for cols in m.x_cols]
    used = B[:, pick].sum(1)
    if np.any(used > hi + 1e-12):
        return None
    while True:
        best, best_gain = None, 0.0
        for g, cols in enumerate(m.x_cols):
            cur = pick[g]
            for j in cols:
                save = m.c[cur] - m.c[j]
                if save <= 0 or np.any(used - B[:, cur] + B[:, j] > hi + 1e-12):
                    continue
                gain = save / max(float(weight[j] - weight[cur]), 1e-12)
                if gain > best_gain:
                    best, best_gain = (g, j), gain
        if best is None:
            break
        g, j = best
        used += B[:, j] - B[:, pick[g]]
        pick[g] = j
    z = np.zeros(len(m.c))
    z[pick] = 1.0
    for y, a, b in m.pair_cols:
        z[y] = z[a] * z[b]
    if m.t_col is not None:
        z[m.t_col] = 0.0
        t_rows = [i for i in range(m.A.shape[0]) if m.A.indptr[i + 1] > m.A.indptr[i]
                  and m.A.indices[m.A.indptr[i + 1] - 1] == m.t_col]
        z[m.t_col] = max((float(m.A[i] @ z) for i in t_rows), default=0.0)
    return z


def _polish(m: _Matrix, z: np.ndarray) -> np.ndarray:
    """Exact single-group moves that lower the objective and still fit, until none is left: a solver
    stops within its absolute tolerance of the optimum, and a move that gains less than that is free
    to take here (CBC left a few plans 1e-9 above the optimum on tables over 12 decades)."""
    rows = _budget_rows(m)
    B = m.A[rows].toarray() if rows else np.zeros((0, len(m.c)))
    hi = m.row_hi[rows]
    pick = [cols[int(np.argmax(z[cols]))] for cols in m.x_cols]
    used = B[:, pick].sum(1)
    for _ in range(100):
        moved = False
        for g, cols in enumerate(m.x_cols):
            cur = pick[g]
            for j in cols:
                if m.c[j] < m.c[cur] and np.all(used - B[:, cur] + B[:, j] <= np.maximum(hi, used)):
                    used += B[:, j] - B[:, cur]
                    pick[g], cur, moved = j, j, True
        if not moved:
            break
    out = np.zeros(len(m.c))
    out[pick] = 1.0
    return out


def _lp_bound(m: _Matrix) -> float:
    """The LP relaxation's optimum (scaled units): a proven lower bound on the integer optimum."""
    from scipy.optimize import linprog

    le = np.isfinite(m.row_hi) & (m.row_lo != m.row_hi)
    eq = m.row_lo == m.row_hi
    res = linprog(m.c, A_ub=m.A[le], b_ub=m.row_hi[le], A_eq=m.A[eq], b_eq=m.row_hi[eq],
                  bounds=list(zip(np.where(np.isinf(m.lo), None, m.lo), np.where(np.isinf(m.hi), None, m.hi))),
                  method="highs")
    return float(res.fun) if res.status == 0 else math.nan


@register_searcher
@dataclass(eq=False)
class ILPSearch(ILPParams, Searcher):
    """The exact optimum of the additive proxy (time_limit in seconds)."""

    name = "ilp"

    def search(self, problem: SearchProblem) -> Solution:
        return solve_ilp(self.prepare(problem), **self.ilp_params())


def solve(table: pd.DataFrame, budgets: dict[str, float], ties=None, pairwise: pd.DataFrame | None = None,
          *, aggregate: str = "sum", solver: str = "auto", time_limit: float | None = None,
          threads: int | None = None, warm_start: dict[str, str] | None = None, verify: bool = False) -> Solution:
    """Solve on plain tables: `table` has site, format, omega and cost columns; `budgets` maps a cost
    column to the limit on its sum over sites; `ties` lists groups of sites that share a format;
    `pairwise` has columns site_a, format_a, site_b, format_b, omega; `aggregate` is sum, max or lp:P."""
    problem = SearchProblem(table, dict(budgets), [list(g) for g in (ties or [])], pairwise, aggregate=aggregate)
    return solve_ilp(problem, solver=solver, time_limit=time_limit, threads=threads, warm_start=warm_start,
                     verify=verify)
