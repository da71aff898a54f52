"""The checks every registered plug-in must pass, as plain functions (in the way of scikit-learn's
`estimator_checks` and `optuna.testing`): each raises AssertionError when a plug-in breaks its contract,
so `test_contracts.py` runs them over every registry entry and `test_broken_plugins.py` shows that they
catch a deliberately broken one.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import mpsearch
from mpsearch import hardware_models
from mpsearch.data import CalibrationData
from mpsearch.errors import InfeasibleBudget, MpsearchError
from mpsearch.formats import Choice
from mpsearch.model import Site
from mpsearch.objectives import measure
from mpsearch.params import coerce
from mpsearch.search import Searcher, SearchProblem, Solution


@dataclass
class ModelCase:
    """One model with what the plug-ins are run on. `kind`: 'module' (an nn.Module) or 'pt2' (its
    torch.export archive, loaded back)."""

    kind: str
    model: nn.Module
    data: CalibrationData
    sites: list[Site]
    choices: list[Choice]
    objective: object


# ---- shared ------------------------------------------------------------------------------------------


def snapshot(model: nn.Module) -> tuple:
    """Everything a plug-in must leave as it found it: every tensor of the state dict (bit for bit), every
    module's train/eval flag and every parameter's requires_grad."""
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    return state, [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


def assert_unchanged(model: nn.Module, before: tuple, who: str) -> None:
    state, modes, grads = before
    now = model.state_dict(keep_vars=True)
    assert list(now) == list(state), f"{who} added or removed model state"
    for k, v in state.items():
        assert torch.equal(now[k].detach(), v), f"{who} changed {k!r} of the model"
    assert [m.training for m in model.modules()] == modes, f"{who} left the model in another train/eval mode"
    assert [p.requires_grad for p in model.parameters()] == grads, f"{who} changed requires_grad"


def check_params_round_trip(plugin) -> None:
    """`get_params()` holds every declared setting at its declared type, and rebuilds an equal plug-in."""
    params = plugin.get_params()
    specs = type(plugin).param_specs()
    assert list(params) == list(specs), f"get_params() keys {list(params)} are not the declared {list(specs)}"
    for name, value in params.items():
        assert coerce(value, specs[name].type) == value, f"setting {name}={value!r} is not a {specs[name].type}"
    again = type(plugin)(**params)
    assert again.get_params() == params, "cls(**obj.get_params()).get_params() != obj.get_params()"


def _one_line_refusal(e: MpsearchError) -> None:
    assert str(e).strip() and "\n" not in str(e), f"the refusal is not one line: {e!r}"


# ---- estimators --------------------------------------------------------------------------------------


def check_table_complete(table, case: ModelCase) -> None:
    """One row per (site, choice), no other, every Ω and its standard error finite (errors ≥ 0)."""
    want = {(s.name, c.name) for s in case.sites for c in case.choices}
    got = list(zip(table.frame.site, table.frame.format, strict=True))
    assert len(got) == len(set(got)), "the table repeats a (site, choice) row"
    assert set(got) == want, f"the table misses {sorted(want - set(got))[:3]} or adds {sorted(set(got) - want)[:3]}"
    for col in ("omega", "omega_se"):
        v = table.frame[col].to_numpy(float)
        assert np.isfinite(v).all(), f"{col} has non-finite values"
    assert (table.frame.omega_se.to_numpy(float) >= 0).all(), "a negative standard error"


def run_estimator(make: Callable[[], object], case: ModelCase, seed: int = 0):
    """Estimate once, checking that the model (weights, buffers, modes, grad flags) is left untouched; a
    refusal must be a one-line MpsearchError (returned as None)."""
    before = snapshot(case.model)
    est = make()
    try:
        table = est.estimate(case.model, case.sites, case.choices, case.data, case.objective, seed=seed)
    except MpsearchError as e:
        _one_line_refusal(e)
        assert_unchanged(case.model, before, f"estimator {est.name!r} (refusing)")
        return None
    assert_unchanged(case.model, before, f"estimator {est.name!r}")
    return table


def check_estimator(make: Callable[[], object], module: ModelCase, pt2: ModelCase) -> None:
    """Runs on an nn.Module with a complete table, deterministically under a seed; on the `.pt2` either
    refuses in one line or gives a complete table, equal to the module's when the same method ran."""
    if module.model.training is False:
        module.model.train()  # an estimator must score in eval mode and restore train mode, not leave it
    try:
        table = run_estimator(make, module)
        assert table is not None, "an estimator must run on a plain nn.Module"
        check_table_complete(table, module)
        again = run_estimator(make, module)
        pd.testing.assert_frame_equal(table.frame, again.frame, check_exact=True, obj="same seed, other table")
    finally:
        module.model.eval()
    on_pt2 = run_estimator(make, pt2)
    if on_pt2 is None:
        return
    check_table_complete(on_pt2, pt2)
    if on_pt2.settings.get("method") == table.settings.get("method"):
        np.testing.assert_allclose(on_pt2.frame.omega, table.frame.omega, rtol=1e-4, atol=1e-12,
                                   err_msg="the .pt2 gives another table than its nn.Module")


# ---- searchers ---------------------------------------------------------------------------------------


def random_problem(seed: int, n_sites: int = 4, n_formats: int = 3, metrics: tuple[str, ...] = ("bytes",),
                   ties: bool = False) -> tuple[SearchProblem, dict[str, str] | None, float]:
    """A small random problem whose measured loss is its proxy (additive; a site not named is unquantized,
    zero damage), so every searcher must find the brute-force optimum. Returns (problem, optimum, value)."""
    rng = np.random.default_rng(seed)
    sites, fmts = [f"s{i}" for i in range(n_sites)], [f"f{j}" for j in range(n_formats)]
    rows = []
    for s in sites:
        price = np.sort(rng.uniform(1, 10, n_formats))  # dearer formats damage less
        om = np.sort(rng.uniform(0, 1, n_formats))[::-1] * rng.uniform(0.1, 3)
        extra = {m: rng.uniform(1, 10, n_formats) for m in metrics[1:]}
        rows += [{"site": s, "format": f, "omega": om[j], metrics[0]: price[j], **{m: extra[m][j] for m in extra}}
                 for j, f in enumerate(fmts)]
    table = pd.DataFrame(rows)
    lo = {m: table.groupby("site")[m].min().sum() for m in metrics}
    hi = {m: table.groupby("site")[m].max().sum() for m in metrics}
    limits = {m: lo[m] + rng.uniform(0.3, 0.7) * (hi[m] - lo[m]) for m in metrics}
    tie = [sites[:2]] if ties else []
    per = dict(zip(zip(table.site, table.format, strict=True), table.omega, strict=True))
    cost = {m: dict(zip(zip(table.site, table.format, strict=True), table[m], strict=True)) for m in metrics}

    def measured(a: dict[str, str]) -> float:
        return float(sum(per[(s, f)] for s, f in a.items()))

    problem = SearchProblem(table, limits, tie, evaluate=measured, seed=seed)
    best, best_v = None, math.inf
    for combo in itertools.product(fmts, repeat=n_sites):
        a = dict(zip(sites, combo, strict=True))
        if ties and a[sites[0]] != a[sites[1]]:
            continue
        tot = {m: sum(cost[m][(s, f)] for s, f in a.items()) for m in metrics}
        if all(tot[m] <= limits[m] for m in metrics) and measured(a) < best_v:
            best, best_v = a, measured(a)
    return problem, best, best_v


def check_solution(problem: SearchProblem, sol: Solution, who: str) -> None:
    """A complete assignment of candidate formats, within every budget, ties kept, objective reported truly."""
    assert set(sol.assignments) == set(problem.sites), f"{who} did not assign every site"
    for s, f in sol.assignments.items():
        assert f in problem.formats[s], f"{who} gave {s} the format {f!r}, not one of its candidates"
    assert problem.fits(sol.assignments), f"{who} exceeded a budget: {problem.totals(sol.assignments)} vs " \
                                          f"{problem.limits}"
    for group in problem.ties:
        assert len({sol.assignments[s] for s in group}) == 1, f"{who} split the tie {group}"
    assert sol.objective == pytest.approx(problem.predicted(sol.assignments), rel=1e-9, abs=1e-12), \
        f"{who} misreports its objective"


def check_searcher(make: Callable[[], Searcher], seeds=range(4)) -> None:
    """On small random problems (one or two budgets, with and without a tie): within budget, equal to brute
    force, deterministic, the problem's table untouched; an unreachable budget is InfeasibleBudget."""
    for seed in seeds:
        problem, best, best_v = random_problem(seed, metrics=("bytes", "latency")[: 1 + seed % 2], ties=seed == 3)
        table_before = problem.table.copy()
        sol = make().search(problem)
        who = f"search {make().name!r} (problem {seed})"
        pd.testing.assert_frame_equal(problem.table, table_before, obj=f"{who}: the problem's table")
        check_solution(problem, sol, who)
        assert best is not None
        assert problem.predicted(sol.assignments) == pytest.approx(best_v, rel=1e-9, abs=1e-12), \
            f"{who} found {problem.predicted(sol.assignments)}, brute force {best_v} ({best})"
        again = make().search(random_problem(seed, metrics=("bytes", "latency")[: 1 + seed % 2], ties=seed == 3)[0])
        assert again.assignments == sol.assignments, f"{who} is not deterministic under a seed"
    problem, *_ = random_problem(0)
    tight = problem.with_limits({"bytes": float(problem.table.groupby("site").bytes.min().sum()) * 0.9})
    try:
        make().search(tight)
    except InfeasibleBudget as e:
        _one_line_refusal(e)
    else:
        raise AssertionError(f"search {make().name!r} returned a plan for a budget below the cheapest plan")


# ---- cost models -------------------------------------------------------------------------------------


def check_cost_model(hw, module: ModelCase, pt2: ModelCase) -> None:
    """A complete, finite, non-negative cost table for the choices it supports, its declared metrics
    included; deterministic; the model untouched; the same table from the `.pt2`'s sites."""
    before = snapshot(module.model)
    choices = hardware_models.supported(hw, module.choices)
    assert choices, f"{hw.name}: none of {[c.name for c in module.choices]} is supported"
    for c in module.choices:
        why = hw.unsupported(c)
        assert why is None or (isinstance(why, str) and why.strip()), f"{hw.name}: unsupported() must be None or why"
    table = hardware_models.cost_table(module.sites, choices, hw)
    want = {(s.name, c.name) for s in module.sites for c in choices}
    assert set(zip(table.site, table.format, strict=True)) == want and len(table) == len(want), f"{hw.name}: rows"
    cols = ["bytes", "bits", "bops", *hw.metrics]
    assert set(cols) <= set(table.columns), f"{hw.name}: the table lacks {set(cols) - set(table.columns)}"
    vals = table[cols].to_numpy(float)
    assert np.isfinite(vals).all() and (vals >= 0).all(), f"{hw.name}: non-finite or negative costs"
    ref = hardware_models.reference(module.model, module.sites, hw)
    assert all(math.isfinite(v) and v >= 0 for v in ref.fixed.values()), f"{hw.name}: fixed costs"
    assert_unchanged(module.model, before, f"cost model {hw.name!r}")
    pd.testing.assert_frame_equal(hardware_models.cost_table(module.sites, choices, hw), table,
                                  obj=f"{hw.name}: a second cost table")
    on_pt2 = hardware_models.cost_table(pt2.sites, choices, hw)
    pd.testing.assert_frame_equal(on_pt2, table, obj=f"{hw.name}: the .pt2's cost table")


# ---- formats -----------------------------------------------------------------------------------------


def check_format_on_models(name: str, module: ModelCase, pt2: ModelCase) -> None:
    """`apply` with the format at every site leaves the original untouched, quantizes each site's weight
    as `Format.quantize` does (so a second apply is the same model), and gives the `.pt2` the same outputs."""
    x = module.data.first_x
    outs = []
    for case in (module, pt2):
        before = snapshot(case.model)
        plan = mpsearch.Plan.from_assignments(case.model, {s.name: name for s in case.sites})
        q = mpsearch.apply(case.model, plan)
        assert_unchanged(case.model, before, f"apply with {name!r}")
        fmt = mpsearch.get_format(name)
        for s in case.sites:
            w = case.model.get_parameter(s.param).detach()
            assert torch.equal(q.get_parameter(s.param).detach(), fmt.quantize(w)), f"{name}: {s.name} weight"
        q2 = mpsearch.apply(case.model, plan)
        with torch.no_grad():
            a, b = q(x), q2(x)
        assert torch.equal(a, b), f"{name}: apply is not deterministic"
        outs.append(a)
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-6, msg=f"{name}: the .pt2 computes otherwise")


# ---- objectives --------------------------------------------------------------------------------------


def check_objective(obj, module: ModelCase, pt2: ModelCase, damaged: dict[str, str]) -> None:
    """A finite score, the same twice, the same on the `.pt2`, the model untouched, and the FP model scores
    better than a damaged copy in the objective's own direction (`higher_is_better`)."""
    data = module.data.with_reference(module.model) if obj.needs_reference else module.data
    before = snapshot(module.model)
    v = measure(module.model, data, [obj])[obj.name]
    assert_unchanged(module.model, before, f"objective {obj.name!r}")
    assert math.isfinite(v), f"{obj.name}: non-finite score {v}"
    assert measure(module.model, data, [obj])[obj.name] == v, f"{obj.name}: not deterministic"
    on_pt2 = measure(pt2.model, data, [obj])[obj.name]
    assert on_pt2 == pytest.approx(v, rel=1e-5, abs=1e-7), f"{obj.name}: {on_pt2} on the .pt2, {v} on the module"
    plan = mpsearch.Plan.from_assignments(module.model, damaged)
    worse = measure(mpsearch.apply(module.model, plan), data, [obj])[obj.name]
    better_fp = v > worse if obj.higher_is_better else v < worse
    assert better_fp, f"{obj.name}: the FP model ({v}) does not beat the damaged one ({worse}) in its direction"
