"""The Python API the CLI wraps: `plan`, `sensitivity`, and the measured guard."""

from __future__ import annotations

import logging

import pandas as pd
import torch
from torch import nn

from . import hardware_models
from .apply import quantized
from .budget import Budget, Reference, parse_budgets, resolve
from .data import CalibrationData, as_data, check_fits
from .errors import UsageError
from .formats import DEFAULT_FORMATS, Choice, get_choice, parse_choices
from .model import Site, fingerprint, sites
from .objectives import Objective, default_objective, get_objective, measure
from .plan import Plan, provenance
from .search import SearchProblem, get_searcher
from .sensitivity import SensitivityTable, get_estimator
from .sensitivity import cache as sensitivity_cache

log = logging.getLogger("mpsearch")


def sensitivity(model: nn.Module, data, *, estimator: str = "hessian", formats=None,
                site_list: list[Site] | None = None, objective: str | Objective | None = None, seed: int = 0,
                cache: bool = True, **settings) -> SensitivityTable:
    """Ω(site, format) with error bars from the named estimator (`**settings` go to the estimator).

    Estimators: hessian (auto: exact Gauss-Newton or Hutchinson), fisher, taylor, output, measured.
    The table is cached on disk ($MPSEARCH_CACHE or ~/.cache/mpsearch) unless `cache=False`.
    """
    model.eval()
    data = as_data(data)
    if site_list is None:
        check_fits(model, data)
        site_list = sites(model, data.first_x)
    obj = get_objective(objective) if objective else default_objective(data)
    if obj.needs_reference:
        data = data.with_reference(model)
    choices = parse_choices(formats, DEFAULT_FORMATS)
    est = get_estimator(estimator, **settings)
    return sensitivity_cache.estimate(est, model, site_list, choices, data, obj, seed=seed, use_cache=cache)


def describe(plan: Plan, model: nn.Module, site_list: list[Site], hardware=None,
             omega: pd.DataFrame | None = None) -> Plan:
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
                           "bits_per_weight": cost["bits"] / s.numel, **cost, "omega": o, "omega_se": se}
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
          assignments: dict[str, str], choices: list[Choice], ref: Reference) -> tuple[dict[str, str], dict]:
    """Measure the plan and every uniform plan; never return a plan that measures worse than a uniform
    plan that also fits the budget. Returns (assignments, measurements)."""
    metrics = [objective.name] + (["accuracy"] if data.labelled and objective.name != "accuracy" else [])

    def run(assign: dict[str, str]) -> dict[str, float]:
        with quantized(model, assign):
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
        if fits and m[objective.name] < best - 1e-12:
            best_name, best = c.name, m[objective.name]
    if best_name is not None:
        result["guard"] = (f"uniform {best_name} measured a lower {objective.name} than the searched plan "
                           f"({best:.4g} < {result['plan'][objective.name]:.4g}); returned uniform {best_name}")
        result["searched_plan"] = result["plan"]
        result["plan"] = result["uniform"][best_name]
        return {s: best_name for s in site_names}, result
    return assignments, result


def plan(model: nn.Module, data=None, budget: str | Budget | list | None = None, *, formats=None,
         estimator: str = "hessian", search: str = "ilp", seed: int = 0, hardware=None,
         objective: str | Objective | None = None, guard_uniform: bool = True, ties=None,
         estimator_settings: dict | None = None, search_settings: dict | None = None,
         sensitivity: SensitivityTable | None = None, cache: bool = True) -> Plan:
    """Choose a format per site that minimizes predicted damage within `budget`.

    `sensitivity`: a table from `mpsearch.sensitivity(...)` to reuse across budgets; without it the
    estimate is cached on disk (`cache=False` skips that), so the next plan with another budget reuses it.
    `data`: calibration inputs (tensor, (x, y), dict, or iterable of batches); `budget`: `4MB`,
    `4.5bits`, `30%`, `latency=2ms` (with `hardware`), or a list of those; `formats`: candidate
    choices (default int2-int8 per channel and bf16). With data, the result is measured against
    every uniform plan that fits, and the better one is returned (`guard_uniform=False` skips that).
    """
    budgets = parse_budgets(budget)
    if not budgets:
        raise UsageError("give a budget, e.g. budget='4MB', '4.5bits' or '30%'")
    if data is None:
        raise UsageError("plan needs calibration data: a tensor of inputs, (x, y), or a DataLoader")
    torch.manual_seed(seed)
    model.eval()
    data = as_data(data)
    check_fits(model, data)
    site_list = sites(model, data.first_x)
    obj = get_objective(objective) if objective else default_objective(data)
    if obj.needs_reference:
        data = data.with_reference(model)
    choices = parse_choices(formats, DEFAULT_FORMATS)
    hw = hardware_models.get(hardware)
    if sensitivity is None:
        sens = sensitivity_cache.estimate(get_estimator(estimator, **(estimator_settings or {})), model,
                                          site_list, choices, data, obj, seed=seed, use_cache=cache)
    else:  # one measurement, many budgets
        sens = sensitivity
        have = set(sens.frame.format)
        missing = [c.name for c in choices if c.name not in have]
        if missing:
            raise UsageError(f"the given sensitivity table has no rows for {missing}; estimate it with those formats")
    table = sens.frame.merge(hardware_models.cost_table(site_list, choices, hw), on=["site", "format"])
    ref: Reference = hardware_models.reference(model, site_list, hw)
    problem = SearchProblem(table, resolve(budgets, ref), list(ties or []), seed=seed)
    sol = get_searcher(search, **(search_settings or {})).search(problem)
    assignments, measured = sol.assignments, {}
    if guard_uniform:
        assignments, measured = guard(model, data, obj, problem, assignments, choices, ref)
    result = Plan(
        assignments, fingerprint(model), budgets=[str(b) for b in budgets], measured=measured,
        provenance=provenance(sens.estimator, search, seed, objective=obj.name, solver_status=sol.status,
                              solve_seconds=round(sol.seconds, 4), estimator_settings=sens.settings,
                              formats=[c.name for c in choices], hardware=getattr(hw, "name", None)),
    )
    return describe(result, model, site_list, hw, sens.frame)
