"""The default measured local search: brute-force optimality where the additive ILP misses, a
counted evaluation budget, an injected clock, k-best no-good cuts, and the plan's report."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

import mpsearch
from mpsearch.examples import load_example
from mpsearch.search import SearchProblem, get_searcher
from mpsearch.search.ilp import solve_ilp
from mpsearch.search.local import local_search
from mpsearch.sensitivity.pairwise import MeasuredLoss

FORMATS = {"int2": 2.0, "int3": 3.0, "int4": 4.0, "int8": 8.0}
SITES = ["a", "b", "c", "d", "e"]


def _problem(evaluate=None, avg_bits: float = 3.4) -> SearchProblem:
    """Proxy Ω = 4^-bits × a per-site weight, 10 weights per site: additive, as the Hessian is."""
    w = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 1.5, "e": 0.5}
    rows = [{"site": s, "format": f, "omega": w[s] * 4.0 ** -b, "bits": 10 * b} for s in SITES
            for f, b in FORMATS.items()]
    return SearchProblem(pd.DataFrame(rows), {"bits": avg_bits * 10 * len(SITES)}, evaluate=evaluate)


def _measured(assign: dict[str, str]) -> float:
    """The proxy plus interactions it does not know: a and d hurt each other when both are below
    4 bits, and e breaks at 2 bits once c is below 8 bits."""
    base = _problem().predicted(assign) if len(assign) == len(SITES) else 0.0
    bits = {s: FORMATS[f] for s, f in assign.items()}
    inter = 0.2 * (bits.get("a", 16) < 4 and bits.get("d", 16) < 4)
    inter += 0.1 * (bits.get("e", 16) == 2 and bits.get("c", 16) < 8)
    return base + inter


def _all_fitting(problem):
    for combo in itertools.product(FORMATS, repeat=len(SITES)):
        a = dict(zip(SITES, combo))
        if problem.fits(a):
            yield a


@pytest.mark.parametrize("k_best", [1, 4])  # 1: the moves alone must get there
def test_reaches_the_brute_force_optimum_where_the_ilp_does_not(k_best):
    problem = _problem(_measured)
    feasible = list(_all_fitting(problem))
    best = min(_measured(a) for a in feasible)
    ilp = solve_ilp(problem).assignments
    assert _measured(ilp) > best + 0.05  # the additive ILP walks into the interactions
    sol = local_search(problem, max_evals=60, k_best=k_best)
    assert sol.info["seeds"] == k_best
    assert _measured(sol.assignments) == pytest.approx(best, abs=1e-12)
    assert sol.measured == pytest.approx(best, abs=1e-12)
    assert problem.fits(sol.assignments)
    assert sol.info["evaluations"] <= 60 and sol.info["evaluations"] < len(feasible)
    assert sol.info["gain_over_ilp"] == pytest.approx(_measured(ilp) - best)
    # history: one row per distinct measured plan, the ILP's first
    assert len(sol.history) == sol.info["evaluations"]
    assert sol.history.stage.iloc[0] == "ilp" and sol.history.measured.min() == pytest.approx(best)


@pytest.mark.parametrize("max_evals", [1, 3, 7])
def test_max_evals_counts_every_distinct_measurement(max_evals):
    calls = []

    def counted(assign):
        calls.append(frozenset(assign.items()))
        return _measured(assign)

    sol = local_search(_problem(counted), max_evals=max_evals)
    assert len(set(calls)) == len(calls) <= max_evals  # cached: a plan is never measured twice
    assert sol.info["stopped"] == "max_evals" and sol.info["evaluations"] == len(calls)
    assert sol.measured == min(_measured(dict(c)) for c in calls)  # the best plan it saw


def test_time_limit_uses_the_injected_clock():
    ticks = iter(range(10_000))
    sol = local_search(_problem(_measured), max_evals=1000, time_limit=5, clock=lambda: float(next(ticks)))
    assert sol.info["stopped"] == "time_limit"
    # the clock is read once before each new measurement after the first: a limit of 5 ticks allows 5
    assert sol.info["evaluations"] == 5


def test_k_best_are_the_proxys_best_plans_in_order():
    problem = _problem()
    found: list[dict[str, str]] = []
    for _ in range(5):
        found.append(solve_ilp(problem, exclude=found).assignments)
    values = sorted(problem.predicted(a) for a in _all_fitting(problem))
    assert [problem.predicted(a) for a in found] == pytest.approx(values[:5])
    assert len({frozenset(a.items()) for a in found}) == 5


def test_without_data_it_is_the_ilp():
    problem = _problem()
    assert get_searcher("local").search(problem).assignments == solve_ilp(problem).assignments


def test_warm_start_is_a_seed_so_a_sweep_never_goes_backwards():
    problem = _problem(_measured, avg_bits=3.8)
    small = local_search(_problem(_measured, avg_bits=3.4), max_evals=60)
    sol = local_search(problem, max_evals=2, warm_start=small.assignments)  # only the seeds fit in 2
    assert sol.measured <= small.measured + 1e-12


def test_bad_settings_fail_in_one_line():
    with pytest.raises(mpsearch.errors.UsageError, match="max_evals"):
        local_search(_problem(_measured), max_evals=0)
    with pytest.raises(mpsearch.errors.UsageError, match="no setting 'trials'"):
        get_searcher("local", trials=3)


def test_default_plan_finds_the_measured_optimum_on_a_real_model():
    """digits-seq at 2.5 bits: the Hessian ILP's plan is not the best of the 11 plans that fit
    (measured on the calibration data); the default finds the best, within a counted budget."""
    ex = load_example("digits-seq")
    fmts = ["int2", "int3", "int4", "int8"]
    kw = dict(budget="2.5bits", formats=fmts, guard_uniform=False)
    ilp = mpsearch.plan(ex.model, ex.calibration, search="ilp", **kw)
    plan = mpsearch.plan(ex.model, ex.calibration, search="local", max_evals=12, **kw)
    names = list(plan.assignments)
    loss = MeasuredLoss(ex.model, ex.calibration, "cross_entropy")
    from mpsearch import hardware_models
    from mpsearch.formats import parse_choices

    site_list = mpsearch.sites(ex.model, ex.calibration["x"][:1])
    costs = hardware_models.cost_table(site_list, parse_choices(fmts, fmts)).set_index(["site", "format"]).bits
    limit = 2.5 * sum(s.numel for s in site_list) * (1 + 1e-9)
    feasible = [dict(zip(names, c)) for c in itertools.product(fmts, repeat=len(names))
                if sum(costs[(s, f)] for s, f in zip(names, c)) <= limit]
    values = np.array([loss(a) for a in feasible])
    assert loss(plan.assignments) == pytest.approx(values.min(), rel=1e-9)
    assert loss(ilp.assignments) > values.min() * (1 + 1e-6)
    summary = plan.measured["search_summary"]
    assert summary["evaluations"] <= 12 and not math.isnan(summary["best_measured"])
    assert summary["best_measured"] == pytest.approx(values.min(), rel=1e-9)


def test_the_default_searcher_is_local_and_ilp_stays_available():
    """`mpsearch.plan` without `search` runs the measured local search on a model that is not a language
    model (it reports what it measured); `search="ilp"` is the proxy's plan alone, with no measured search."""
    from mpsearch.planner import PlanConfig

    assert PlanConfig().search == "auto"
    ex = load_example("digits-seq")
    kw = dict(budget="2.5bits", formats=["int2", "int3", "int4", "int8"], guard_uniform=False, cache=False)
    default = mpsearch.plan(ex.model, ex.calibration, max_evals=12, **kw)
    ilp = mpsearch.plan(ex.model, ex.calibration, search="ilp", **kw)
    assert default.provenance["search"] == "local" and ilp.provenance["search"] == "ilp"
    assert 1 <= default.measured["search_summary"]["evaluations"] <= 12
    assert "search_summary" not in ilp.measured
    loss = MeasuredLoss(ex.model, ex.calibration, "cross_entropy")
    assert loss(default.assignments) < loss(ilp.assignments)  # the ILP's plan is not the measured best here


@pytest.mark.parametrize("agrees", [True, False])
def test_confirm_keeps_the_search_plan_only_if_held_back_samples_agree(agrees):
    """`confirm`: a loss on samples the search never measured. If it disagrees with the search (the
    proxy's plan measures better there) the ILP's plan is returned; if it agrees, the search's."""
    ilp = solve_ilp(_problem()).assignments
    confirm = _measured if agrees else (lambda a: 0.0 if a == ilp else 1.0)
    sol = local_search(SearchProblem(**{**_problem(_measured).__dict__, "confirm": confirm}), max_evals=60)
    assert sol.info["confirmed"] is agrees
    assert (sol.assignments == ilp) is not agrees
    assert sol.measured == pytest.approx(_measured(sol.assignments))


def test_confirm_holds_back_calibration_samples_in_the_planner():
    """plan(search_settings={'confirm': 0.5}) measures on half the samples and confirms on the rest."""
    ex = load_example("digits-seq")
    p = mpsearch.plan(ex.model, ex.calibration, budget="2.5bits", formats=["int2", "int3", "int4", "int8"],
                      guard_uniform=False, cache=False, max_evals=12, search_settings={"confirm": 0.5})
    summary = p.measured["search_summary"]
    assert "confirmed" in summary or summary["gain_over_ilp"] == 0
    with pytest.raises(mpsearch.errors.UsageError, match="confirm"):
        mpsearch.plan(ex.model, ex.calibration, budget="2.5bits", cache=False, search_settings={"confirm": 1.5})


def test_auto_is_the_proxy_ilp_for_a_language_model_unless_a_measured_budget_is_asked():
    """A Hugging Face language model plans with the ILP alone by default (each measurement is a full
    forward and small text calibration sets overfit: README, default search); --max-evals asks for local."""
    pytest.importorskip("transformers")
    from transformers import LlamaConfig, LlamaForCausalLM

    from mpsearch.planner import PlanConfig, Planner

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    ids = torch.randint(0, 64, (4, 16))
    data = {"x": {"input_ids": ids}}
    assert Planner(model, data).config.search == "ilp"
    assert Planner(model, data, PlanConfig(search_settings={"max_evals": 5})).config.search == "local"
    assert Planner(model, data, PlanConfig(search="local")).config.search == "local"
    ex = load_example("digits-seq")
    assert Planner(ex.model, ex.calibration).config.search == "local"
