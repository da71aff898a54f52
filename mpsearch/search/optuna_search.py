"""Black-box search over per-site choices with Optuna, for when the additive proxy misleads.

One categorical parameter per tie group. `tpe` minimizes one objective; `nsga2` keeps the front of
(objective, cost) with NSGA-II. The objective is the *measured* loss when the problem can evaluate
plans (else the proxy Ω). Budgets are Optuna constraints (violation = max_k total_k/limit_k − 1), so
infeasible samples are never measured. The study starts from the ILP's optimum (and, for NSGA-II,
the ILP optima at cheaper budgets plus every uniform plan that fits) through `enqueue_trial`, so it
can only improve on the exact proxy solution. Reproducible for a seed (one worker). The study lives in
memory unless the user gives a storage URL; in a given storage an unnamed study is named after the
problem, sampler and seed, so a rerun resumes it instead of adding a new study each time.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import InfeasibleBudget, UsageError
from ._base import Searcher, SearchProblem, Solution, register_searcher
from .ilp import ILPParams, solve_ilp
from .refine import measured_loss

SAMPLERS = ("tpe", "nsga2")


def _digest(problem: SearchProblem) -> str:
    h = hashlib.sha256(pd.util.hash_pandas_object(problem.table, index=False).to_numpy().tobytes())
    h.update(repr(sorted(problem.limits.items())).encode())
    return h.hexdigest()[:12]


def _seeds(problem: SearchProblem, sampler: str, cost: str | None, ilp_settings: dict) -> list[tuple[str, dict]]:
    """Assignments to enqueue first: the ILP optimum, cheaper ILP optima (NSGA-II), fitting uniform plans."""
    out = [("ilp", solve_ilp(problem, **ilp_settings).assignments)]
    if sampler == "nsga2" and cost is not None:
        cheapest = float(problem.table.groupby("site", sort=False)[cost].min().sum())
        for frac in np.linspace(0.0, 1.0, 6)[:-1]:
            limits = dict(problem.limits)
            limits[cost] = cheapest + frac * (problem.limits[cost] - cheapest)
            try:
                out.append((f"ilp@{frac:.1f}", solve_ilp(problem.with_limits(limits), **ilp_settings).assignments))
            except InfeasibleBudget:  # a sweep point the other budgets make infeasible is skipped
                continue
    common = set.intersection(*(set(f) for f in problem.formats.values()))
    for f in problem.formats[problem.sites[0]]:
        uni = {s: f for s in problem.sites}
        if f in common and problem.fits(uni):
            out.append((f"uniform {f}", uni))
    return out


def optuna_search(problem: SearchProblem, *, sampler: str = "tpe", trials: int = 100, objective: str | None = None,
                  storage: str | None = None, study_name: str | None = None, seed: int | None = None,
                  cost: str | None = None, max_tries: int | None = None, progress: bool | None = None,
                  **ilp_settings) -> Solution:
    """Search with Optuna. `trials`: plans to evaluate (feasible ones; infeasible samples are free, up to
    `max_tries` in all). `objective`: 'measured' (default when the problem can evaluate) or 'proxy'.
    `storage`: an Optuna storage URL (None or 'memory': in memory).
    `cost`: the cost column NSGA-II trades against (default: the first budget's)."""
    import optuna
    from tqdm.auto import tqdm

    if sampler not in SAMPLERS:
        raise UsageError(f"unknown Optuna sampler {sampler!r}; use {' or '.join(SAMPLERS)}")
    objective = objective or ("measured" if problem.evaluate is not None else "proxy")
    if objective not in ("measured", "proxy"):
        raise UsageError(f"objective must be 'measured' or 'proxy', not {objective!r}")
    loss = measured_loss(problem, "optuna") if objective == "measured" else None
    problem.check_feasible()
    seed = problem.seed if seed is None else seed
    cost = cost or next(iter(problem.limits), None)
    if sampler == "nsga2" and cost is None:
        raise UsageError("NSGA-II trades the objective against a cost: give a budget or cost='bytes'")
    t0 = time.perf_counter()
    groups = problem.groups
    cols = list(problem.limits)

    def violation(assign: dict[str, str]) -> float:
        tot = problem.totals(assign)
        return max([tot[c] / lim - 1 if lim > 0 else tot[c] - lim for c, lim in problem.limits.items()] or [-1.0])

    # Optuna >= 5 reads constraints the trial sets; older versions take a constraints_func
    native = hasattr(optuna.trial.Trial, "set_constraint")
    extra = {} if native else {"constraints_func": lambda t: [t.user_attrs.get("violation", 0.0)]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if sampler == "tpe":
            smp = optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=10, **extra)
        else:
            smp = optuna.samplers.NSGAIISampler(seed=seed, population_size=min(50, max(8, trials // 4)), **extra)
    url = None if storage in (None, "memory") else storage
    name = study_name or f"mpsearch-{sampler}-{_digest(problem)}-s{seed}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=url, sampler=smp, study_name=name, load_if_exists=True,
                                directions=["minimize"] if sampler == "tpe" else ["minimize", "minimize"])
    if not study.trials:
        for source, assign in _seeds(problem, sampler, cost, ilp_settings):
            study.enqueue_trial({g[0][0]: assign[g[0][0]] for g in groups}, user_attrs={"source": source},
                                skip_if_exists=True)

    counted = {"n": 0}
    bar = tqdm(total=trials, desc=f"optuna {sampler}", unit="plan", leave=False,
               disable=None if progress is None else not progress)

    def run(trial):
        assign = {}
        for sites, fmts in groups:
            f = trial.suggest_categorical(sites[0], fmts)
            for s in sites:
                assign[s] = f
        v = violation(assign)
        trial.set_user_attr("violation", v)
        if native:
            trial.set_constraint("budget", v)
        trial.set_user_attr("source", trial.user_attrs.get("source", "sampled"))
        for c, val in problem.totals(assign).items():
            trial.set_user_attr(c, val)
        feasible = v <= 1e-9
        if feasible:
            before = loss.measurements if loss is not None else None
            value = loss(assign) if loss is not None else problem.predicted(assign)
            if loss is None or loss.measurements > before:
                counted["n"] += 1
                bar.update(1)
        else:
            value = problem.predicted(assign)  # never measured: the constraint ranks infeasible trials
        return value if sampler == "tpe" else (value, problem.totals(assign)[cost])

    def stop(study_, _trial):
        if counted["n"] >= trials:
            study_.stop()

    try:
        study.optimize(run, n_trials=max_tries or 20 * trials, callbacks=[stop], gc_after_trial=False)
    finally:
        bar.close()
    rows = []
    front = {t.number for t in study.best_trials} if sampler == "nsga2" else set()
    for t in study.trials:
        if t.state != optuna.trial.TrialState.COMPLETE:
            continue
        assign = {s: t.params[g[0]] for g, _ in groups for s in g}
        rows.append({"trial": t.number, "source": t.user_attrs.get("source"), "value": t.values[0],
                     "feasible": t.user_attrs["violation"] <= 1e-9, **{c: t.user_attrs.get(c) for c in cols},
                     "pareto": t.number in front, "assignments": assign})
    hist = pd.DataFrame(rows)
    ok = hist[hist.feasible] if len(hist) else hist
    if not len(ok):
        raise InfeasibleBudget(f"the Optuna study {name!r} holds no plan within the budgets; relax them or start "
                               "a new study (another study_name)")
    best = ok.loc[ok.value.idxmin()]
    assign = best.assignments
    return Solution(assign, objective, problem.predicted(assign), float("nan"), time.perf_counter() - t0,
                    problem.totals(assign), f"optuna-{sampler}", measured=float(best.value) if loss else None,
                    history=hist.assign(study=name))


@register_searcher
@dataclass(eq=False)
class OptunaSearch(ILPParams, Searcher):
    """`sampler`: tpe or nsga2; `trials`: plans to evaluate; `objective`: measured or proxy (None: measured
    when the problem can evaluate); `storage`: an Optuna storage URL (None or 'memory': in memory);
    `cost`: NSGA-II's cost column; `max_tries`: samples in all; the ILP settings are the seeds'."""

    name = "optuna"
    sampler: Literal["tpe", "nsga2"] = "tpe"
    trials: int = 100
    objective: Literal["measured", "proxy"] | None = None
    storage: str | None = None
    study_name: str | None = None
    seed: int | None = None
    cost: str | None = None
    max_tries: int | None = None
    progress: bool | None = None

    def search(self, problem: SearchProblem) -> Solution:
        return optuna_search(self.prepare(problem), **self.search_params())
