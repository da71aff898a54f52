"""Optuna search: seeded with the ILP, measured objective, budgets as constraints, reproducible."""

from __future__ import annotations

import itertools

import numpy as np
import optuna
import pandas as pd
import pytest

from mpsearch.planner.pareto import non_dominated
from mpsearch.search import SearchProblem, get_searcher
from mpsearch.search.ilp import solve_ilp
from mpsearch.search.optuna_search import optuna_search


def synthetic(seed: int = 0):
    """8 sites × 3 formats whose measured loss punishes one choice the additive proxy finds cheap."""
    rng = np.random.default_rng(seed)
    sites, fmts = [f"s{i}" for i in range(8)], ["lo", "mid", "hi"]
    om = {"lo": 1.0, "mid": 0.3, "hi": 0.0}
    cost = {"lo": 2.0, "mid": 4.0, "hi": 8.0}
    scale = rng.uniform(0.5, 2.0, len(sites))
    table = pd.DataFrame([{"site": s, "format": f, "omega": scale[i] * om[f], "bytes": cost[f]}
                          for i, s in enumerate(sites) for f in fmts])

    weak = sites[int(np.argmin(scale))]

    def measured(a: dict[str, str]) -> float:
        base = sum(scale[i] * om[a[s]] for i, s in enumerate(sites) if s in a)
        # the site the proxy finds cheapest to degrade hurts far more than it predicts
        return base + (3.0 if a.get(weak) == "lo" else 0.0)

    limit = {"bytes": 30.0}
    feasible = [c for c in itertools.product(fmts, repeat=len(sites)) if sum(cost[f] for f in c) <= limit["bytes"]]
    best = min(measured(dict(zip(sites, c))) for c in feasible)
    return table, limit, measured, best, len(feasible)


@pytest.mark.parametrize("seed", [0, 1])
def test_tpe_finds_the_measured_optimum_the_ilp_misses(seed):
    table, limit, measured, best, n_feasible = synthetic()
    problem = SearchProblem(table, limit, evaluate=measured)
    ilp = solve_ilp(problem)
    assert measured(ilp.assignments) > best + 0.5  # the additive proxy is misled here
    sol = optuna_search(SearchProblem(table, limit, evaluate=measured), trials=80, storage="memory", seed=seed)
    assert n_feasible > 10 * 80  # not by enumeration
    assert sol.measured == pytest.approx(best)
    assert sol.history.iloc[0].source == "ilp"
    assert sol.history.feasible.sum() <= len(sol.history)
    assert problem.fits(sol.assignments)


def test_same_seed_same_search():
    table, limit, measured, *_ = synthetic(1)
    runs = [optuna_search(SearchProblem(table, limit, evaluate=measured), trials=25, storage="memory", seed=3)
            for _ in range(2)]
    assert runs[0].history.value.tolist() == runs[1].history.value.tolist()
    assert runs[0].assignments == runs[1].assignments


def test_sqlite_storage_keeps_the_study(tmp_path):
    table, limit, measured, *_ = synthetic(2)
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    sol = get_searcher("optuna", trials=10, storage=url, study_name="s1").search(
        SearchProblem(table, limit, evaluate=measured))
    assert (tmp_path / "studies.db").is_file()
    study = optuna.load_study(study_name="s1", storage=url)
    assert len(study.trials) == len(sol.history)
    assert study.trials[0].user_attrs["source"] == "ilp"


def test_nsga2_front_is_non_dominated_and_within_budget():
    table, limit, measured, *_ = synthetic(0)
    sol = optuna_search(SearchProblem(table, limit, evaluate=measured), sampler="nsga2", trials=60,
                        storage="memory", seed=0)
    h = sol.history[sol.history.feasible]
    front = h[h.pareto]
    assert len(front) >= 2
    assert non_dominated(front.bytes.to_numpy(), front.value.to_numpy()).all()
    assert (front.bytes <= limit["bytes"]).all()
    assert sol.measured == h.value.min()
    assert {"ilp", "ilp@0.0"} <= set(h.source)


def test_proxy_objective_without_measurements():
    table, limit, *_ = synthetic(0)
    problem = SearchProblem(table, limit)
    sol = optuna_search(problem, trials=20, storage="memory")
    assert sol.status == "proxy" and sol.measured is None
    assert sol.objective == pytest.approx(solve_ilp(problem).objective)  # the enqueued ILP optimum stays best


def test_default_storage_is_in_memory_and_writes_nothing(tmp_path, monkeypatch):
    """No storage given: the study lives in memory; nothing lands under the cache root or the working folder."""
    root = tmp_path / "cache-root"
    monkeypatch.setenv("MPSEARCH_CACHE", str(root))
    monkeypatch.chdir(tmp_path)
    table, limit, measured, *_ = synthetic(2)
    searcher = get_searcher("optuna", trials=5)
    assert searcher.get_params()["storage"] is None
    sol = searcher.search(SearchProblem(table, limit, evaluate=measured))
    assert len(sol.history) >= 5 and sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_named_storage_without_study_name_resumes_one_study(tmp_path):
    """In a given storage an unnamed study is named after the problem and seed: a rerun adds no second study."""
    table, limit, measured, *_ = synthetic(2)
    url = f"sqlite:///{tmp_path / 's.db'}"
    for _ in range(2):
        optuna_search(SearchProblem(table, limit, evaluate=measured), trials=4, storage=url, seed=1)
    assert len(optuna.get_all_study_summaries(url)) == 1
