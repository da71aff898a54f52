"""Measured pairwise terms: the definition, and exactness of singles + pairs for two sites."""

from __future__ import annotations

import copy
import itertools

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpsearch import solve
from mpsearch.apply import quantize_weights_
from mpsearch.errors import UsageError
from mpsearch.sensitivity.pairwise import MeasuredLoss, candidates_of, pairwise_terms, rank_pairs, site_terms

FORMATS = ["int2", "int3", "int4", "bf16"]


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 12)
        self.b = nn.Linear(12, 3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


@pytest.fixture(scope="module")
def two_layer():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=g)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3:].sum(1) > 0.5).long()
    model = TwoLayer()
    opt = torch.optim.Adam(model.parameters(), lr=0.03)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y


def ce(model, x, y, assign):
    """The loss with `assign` applied to a copy: independent of the code under test."""
    m = quantize_weights_(copy.deepcopy(model), assign)
    with torch.no_grad():
        return float(F.cross_entropy(m(x), y))


def test_terms_match_their_definition(two_layer):
    model, x, y = two_layer
    terms = pairwise_terms(model, (x, y), "cross_entropy", ["a", "b"], FORMATS)
    assert len(terms) == 9  # bf16 is skipped: 3 × 3 format pairs for the one site pair
    fp = ce(model, x, y, {})
    for r in terms.itertuples():
        expect = ce(model, x, y, {r.site_a: r.format_a, r.site_b: r.format_b}) - \
            ce(model, x, y, {r.site_a: r.format_a}) - ce(model, x, y, {r.site_b: r.format_b}) + fp
        assert r.omega == pytest.approx(expect, rel=1e-5, abs=1e-7)
    assert (terms.omega.abs() > 1e-6).any()  # the two layers do interact


def test_singles_plus_pairs_make_the_ilp_exact_for_two_sites(two_layer):
    """With two sites Σ Ω_a + Ω_ab reconstructs every measured loss, so the ILP finds the measured optimum."""
    model, x, y = two_layer
    loss = MeasuredLoss(model, (x, y), "cross_entropy")
    cands = candidates_of(["a", "b"], ["int2", "int3", "int4"])
    singles = site_terms(loss, cands)
    pw = pairwise_terms(model, (x, y), "cross_entropy", ["a", "b"], ["int2", "int3", "int4"], loss=loss)
    bits = {"int2": 2, "int3": 3, "int4": 4}
    n = {"a": 72, "b": 36}
    table = singles.assign(bits=[bits[f] * n[s] for s, f in zip(singles.site, singles.format)])
    for limit in (6 * 108 // 2, 3 * 108, 3.5 * 108, 4 * 108):
        sol = solve(table, {"bits": limit}, pairwise=pw)
        feasible = [dict(zip("ab", c)) for c in itertools.product(bits, repeat=2)
                    if sum(bits[f] * n[s] for s, f in zip("ab", c)) <= limit]
        best = min(ce(model, x, y, a) for a in feasible)
        assert ce(model, x, y, sol.assignments) == pytest.approx(best, rel=1e-6)
        assert sol.objective == pytest.approx(best - ce(model, x, y, {}), rel=1e-4, abs=1e-6)


def test_pair_ranking_puts_neighbours_first_then_the_strongest_bound():
    singles = pd.DataFrame({"site": ["s0", "s1", "s2", "s3"], "format": ["f"] * 4,
                            "omega": [1.0, 0.01, 0.01, 5.0]})
    pairs = rank_pairs(["s0", "s1", "s2", "s3"], singles)
    # neighbours by sqrt(Ω_a Ω_b): 0.22, 0.1, 0.01; then the rest: 2.24, 0.22, 0.1
    assert pairs == [("s2", "s3"), ("s0", "s1"), ("s1", "s2"), ("s0", "s3"), ("s1", "s3"), ("s0", "s2")]
    assert rank_pairs(["s0", "s1", "s2", "s3"], singles, max_pairs=2) == pairs[:2]


def test_plan_form_and_errors(two_layer):
    model, x, y = two_layer
    loss = MeasuredLoss(model, (x, y), "cross_entropy")
    terms = pairwise_terms(model, (x, y), "cross_entropy", ["a", "b"], {"a": "int2", "b": "int3"}, loss=loss)
    assert list(terms.columns) == ["site_a", "format_a", "site_b", "format_b", "omega"]
    assert len(terms) == 1 and loss.measurements == 4  # FP, a, b, both
    with pytest.raises(UsageError, match="unknown site"):
        pairwise_terms(model, (x, y), "cross_entropy", ["a", "b"], {"c": "int2"})
    with pytest.raises(UsageError, match="unknown site"):
        pairwise_terms(model, (x, y), "cross_entropy", ["a", "b"], FORMATS, pairs=[("a", "z")])
