"""The Python API the CLI wraps: `plan`, `sensitivity`, and the measured guard."""

from __future__ import annotations

import logging

import pandas as pd
import torch
from torch import nn

from . import hardware_models
from .activations import ActParams, calibrate_choices, site_record
from .apply import quantized
from .budget import Budget, Reference, parse_budgets, resolve
from .data import CalibrationData, as_data, check_fits
from .errors import UsageError
from .formats import DEFAULT_FORMATS, Choice, get_choice, parse_choices
from .model import Site, eval_mode, fingerprint, sites
from .objectives import Objective, default_objective, get_objective, measure
from .plan import Plan, provenance
from .search import SearchProblem, get_searcher
from .search._base import check_feasible
from .search.local import for_bisection, polish, search_report
from .search.tolerance import Tolerance, drop_check, within_tolerance
from .sensitivity import SensitivityTable, get_estimator
from .sensitivity import cache as sensitivity_cache
from .sensitivity.pairwise import MeasuredLoss

log = logging.getLogger("mpsearch")


def sensitivity(model: nn.Module, data, *, estimator: str = "hessian", formats=None,
                site_list: list[Site] | None = None, objective: str | Objective | None = None, seed: int = 0,
                cache: bool = True, **settings) -> SensitivityTable:
    """Ω(site, format) with error bars from the named estimator (`**settings` go to the estimator).

    Estimators: hessian (auto: exact Gauss-Newton or Hutchinson), fisher, taylor, output, measured.
    The table is cached on disk ($MPSEARCH_CACHE or ~/.cache/mpsearch) unless `cache=False`.
    """
    with eval_mode(model):
        data, site_list, obj = _prepare(model, data, objective, site_list)
        est = get_estimator(estimator, **settings)
        return sensitivity_cache.estimate(est, model, site_list, parse_choices(formats, DEFAULT_FORMATS), data, obj,
                                          seed=seed, use_cache=cache)


def _prepare(model: nn.Module, data, objective, site_list: list[Site] | None = None):
    """Normalize the data, find the sites, pick the objective, and attach FP outputs if it scores against them."""
    data = as_data(data)
    if site_list is None:
        check_fits(model, data)
        site_list = sites(model, data.first_x)
    obj = get_objective(objective) if objective else default_objective(data)
    if obj.needs_reference:
        data = data.with_reference(model)
    return data, site_list, obj


def describe(plan: Plan, model: nn.Module, site_list: list[Site], hardware=None,
             omega: pd.DataFrame | None = None, acts: ActParams | None = None) -> Plan:
    """Fill `plan.sites` and `plan.totals` with predicted costs (and Ω where known)."""
    hw = hardware_models.get(hardware)
    ref = hardware_models.reference(model, site_list, hw)
    om = {} if omega is None else {(r.site, r.format): (r.omega, r.omega_se) for r in omega.itertuples()}
    records, sums = {}, {}
    for s in site_list:
        c = get_choice(plan.assignments[s.name])
        cost = hardware_models.storage_costs(s, c) | (hw.site_cost(s, c) if hw else {})
        o, se = om.get((s.name, c.name), (None, None))
        records[s.name] = {"format": c.name, "kind": s.kind, "params": s.numel, "macs": s.macs,
                           "bits_per_weight": cost["bits"] / s.numel, **cost, "omega": o, "omega_se": se,
                           **site_record(c, s.name, acts or {})}
        for k, v in cost.items():
            sums[k] = sums.get(k, 0.0) + v
    totals = {k: v + ref.fixed.get(k, 0.0) for k, v in sums.items()}
    totals["avg_bits"] = sums["bits"] / ref.weights
    totals["bytes_16bit"] = ref.full["bytes"]
    if om:
        totals["omega"] = float(sum(r["omega"] for r in records.values()))
    plan.sites, plan.totals = records, totals
    return plan


def _fits(problem: SearchProblem, assignments: dict[str, str]) -> bool:
    t = problem.totals(assignments)
    return all(t[c] <= lim * (1 + 1e-9) + 1e-12 for c, lim in problem.limits.items())


def guard(model: nn.Module, data: CalibrationData, objective: Objective, problem: SearchProblem,
          assignments: dict[str, str], choices: list[Choice], ref: Reference,
          acts: ActParams | None = None, admissible=None) -> tuple[dict[str, str], dict]:
    """Measure the plan and every uniform plan; never return a plan that measures worse than a uniform
    plan that also fits the budget (and passes `admissible`, e.g. a --max-drop tolerance).
    Returns (assignments, measurements)."""
    metrics = [objective.name] + (["accuracy"] if data.labelled and objective.name != "accuracy" else [])

    def run(assign: dict[str, str]) -> dict[str, float]:
        with quantized(model, assign, acts):
            return measure(model, data, metrics)

    site_names = problem.sites
    table = problem.table.set_index(["site", "format"])
    result = {"objective": objective.name, "data": "calibration", "fp": measure(model, data, metrics),
              "plan": run(assignments), "uniform": {}}
    best_name, best = None, result["plan"][objective.name]
    for c in choices:
        uni = {s: c.name for s in site_names}
        fits = _fits(problem, uni)
        rows = table.loc[list(uni.items())]
        m = run(uni) | {"fits_budget": fits, "bytes": float(rows.bytes.sum()) + ref.fixed["bytes"],
                        "avg_bits": float(rows.bits.sum()) / ref.weights}
        result["uniform"][c.name] = m
        if fits and m[objective.name] < best - 1e-12 and (admissible is None or admissible(uni)):
            best_name, best = c.name, m[objective.name]
    if best_name is not None:
        result["guard"] = (f"uniform {best_name} measured a lower {objective.name} than the searched plan "
                           f"({best:.4g} < {result['plan'][objective.name]:.4g}); returned uniform {best_name}")
        result["searched_plan"] = result["plan"]
        result["plan"] = result["uniform"][best_name]
        return {s: best_name for s in site_names}, result
    return assignments, result


def plan(model: nn.Module, data=None, budget: str | Budget | list | None = None, *, formats=None,
         estimator: str = "hessian", search: str = "local", seed: int = 0, hardware=None,
         objective: str | Objective | None = None, guard_uniform: bool = True, ties=None,
         estimator_settings: dict | None = None, search_settings: dict | None = None,
         sensitivity: SensitivityTable | None = None, max_drop: str | float | None = None,
         drop_metric: str | None = None, cache: bool = True, max_evals: int | None = None,
         time_limit: float | None = None) -> Plan:
    """Choose a format per site that minimizes predicted damage within `budget`.

    `data`: calibration inputs (tensor, (x, y), dict, or iterable of batches); `budget`: `4MB`,
    `4.5bits`, `30%`, `latency=2ms` (with `hardware`), or a list of those; `formats`: candidate
    choices (default int2-int8 per channel and bf16); `sensitivity`: a table from
    `mpsearch.sensitivity(...)` to reuse across budgets. The additive proxy can mislead, so the
    result is measured against every uniform plan that fits, and the better one is returned
    (`guard_uniform=False` skips that).

    `max_drop` (`1%` of FP, or absolute): instead, the cheapest plan within `budget` (default the
    16-bit size) whose measured `drop_metric` (default accuracy with labels) drops at most that much.
    Sensitivities are cached on disk by model, data and settings (`cache=False` recomputes them), so the
    next plan with another budget reuses them.

    The default search (`local`) solves the ILP on the proxy, measures its k best plans on `data`
    and then runs a measured local search; `max_evals` (distinct plans measured) and `time_limit`
    (seconds) bound it. The plan's `measured["search_summary"]` says what it measured.
    """
    # issue 16: the measured search's budget, as searcher settings (checked before any estimate)
    if max_evals is not None and max_evals < 1:
        raise UsageError(f"max_evals must be at least 1 (the ILP's plan is always measured), got {max_evals}")
    search_settings = dict(search_settings or {}) | {k: v for k, v in
                                                     (("max_evals", max_evals), ("time_limit", time_limit))
                                                     if v is not None}
    max_drop = None if max_drop is None else Tolerance.parse(max_drop)  # a typo fails before any estimate
    budgets = parse_budgets(budget) or ([Budget("memory", 1.0, True)] if max_drop is not None else [])
    if not budgets:
        raise UsageError("give a budget, e.g. budget='4MB', '4.5bits' or '30%'")
    if data is None:
        raise UsageError("plan needs calibration data: a tensor of inputs, (x, y), or a DataLoader")
    torch.manual_seed(seed)
    with eval_mode(model):
        return _plan(model, data, budgets, formats=formats, estimator=estimator, search=search, seed=seed,
                     hardware=hardware, objective=objective, guard_uniform=guard_uniform, ties=ties,
                     estimator_settings=estimator_settings, search_settings=search_settings,
                     sensitivity=sensitivity, max_drop=max_drop, drop_metric=drop_metric, cache=cache)


def _plan(model, data, budgets, *, formats, estimator, search, seed, hardware, objective, guard_uniform, ties,
          estimator_settings, search_settings, sensitivity, max_drop, drop_metric, cache) -> Plan:
    data, site_list, obj = _prepare(model, data, objective)
    choices = parse_choices(formats, DEFAULT_FORMATS)
    acts = calibrate_choices(model, data, site_list, choices)  # activation scales for WEIGHT:ACT choices
    hw = hardware_models.get(hardware)
    choices = hardware_models.supported(hw, choices)  # drops (and names) formats the target cannot run
    costs = hardware_models.cost_table(site_list, choices, hw)
    ref: Reference = hardware_models.reference(model, site_list, hw)
    limits = resolve(budgets, ref)
    check_feasible(costs, limits, ref)  # fail before the (expensive) sensitivity estimate
    if sensitivity is None:
        sens = sensitivity_cache.estimate(get_estimator(estimator, **(estimator_settings or {})), model,
                                          site_list, choices, data, obj, seed=seed, use_cache=cache)
    else:  # one measurement, many budgets
        sens = sensitivity
        have = set(sens.frame.format)
        missing = [c.name for c in choices if c.name not in have]
        if missing:
            raise UsageError(f"the given sensitivity table has no rows for {missing}; estimate it with those formats")
    table = sens.frame.merge(costs, on=["site", "format"])
    problem = SearchProblem(table, limits, list(ties or []), seed=seed,
                            evaluate=MeasuredLoss(model, data, obj, acts))
    searcher = get_searcher(search, **(search_settings or {}))
    check = None if max_drop is None else drop_check(model, data, max_drop, drop_metric, acts)
    if check is not None:  # bisection to tolerance; the guard then works at the accepted cost
        sol, problem = within_tolerance(problem, for_bisection(searcher), check)
        sol = polish(problem, searcher, sol, check.accepts)  # issue 16: one measured search at the end
    else:
        sol = searcher.search(problem)
    assignments, measured = sol.assignments, {}
    if guard_uniform:
        assignments, measured = guard(model, data, obj, problem, assignments, choices, ref, acts,
                                      admissible=None if check is None else check.accepts)
    if sol.history is not None and len(sol.history) <= 100:  # what the search measured (bisection, refine)
        measured["search"] = sol.history.drop(columns="assignments", errors="ignore").to_dict("records")
    if sol.info:  # issue 16: the measured search's summary, and the returned plan's distance from its best
        measured["search_summary"] = search_report(sol, measured, obj.name, obj.higher_is_better)
    result = Plan(
        assignments, fingerprint(model), budgets=[str(b) for b in budgets], measured=measured,
        provenance=provenance(sens.estimator, search, seed, objective=obj.name, solver_status=sol.status,
                              solve_seconds=round(sol.seconds, 4), estimator_settings=sens.settings,
                              formats=[c.name for c in choices], hardware=getattr(hw, "name", None),
                              max_drop=None if max_drop is None else str(max_drop)),
    )
    return describe(result, model, site_list, hw, sens.frame, acts)
