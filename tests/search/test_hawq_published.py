"""Reproduce HAWQ-V3's published ILP results from their published inputs (tests/data/hawq_v3_ilp.json:
the arrays of the HAWQ repo's ILP.ipynb and the bit configurations of its bit_config.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from mpsearch import solve
from mpsearch.search.ilp import available_solvers

SOLVERS = available_solvers()
DATA = json.loads((Path(__file__).parents[1] / "data" / "hawq_v3_ilp.json").read_text())
COLUMN = {"modelsize": "size", "bops": "bops", "latency": "latency"}
# One published configuration is not the optimum of the published inputs: for ResNet-50 at
# modelsize 0.25 the published plan keeps layer 39 at INT4 although INT8 there still fits the limit
# (14.60 of 14.65 size units) and lowers Ω from 0.08311 to 0.07495. The notebook stores no outputs,
# so that plan may have come from other traces; we assert that ours is feasible, lower and optimal.
NOT_OPTIMAL = {("resnet50", "modelsize_0.25")}


def hawq_table(d: dict) -> pd.DataFrame:
    """One row per (layer, INT4|INT8), with HAWQ's Ω = (Tr/n)·‖ΔW‖² and the notebook's cost formulas."""
    rows = []
    for i in range(len(d["parameters"])):
        for b in (4, 8):
            rows.append({"site": f"L{i}", "format": f"int{b}",
                         "omega": d["Hutchinson_trace"][i] * d[f"delta_weights_{b}bit_square"][i],
                         "size": d["parameters"][i] * b / 8, "bops": d["bops"][i] * (b / 32) ** 2,
                         "latency": d[f"latency_int{b}"][i]})
    return pd.DataFrame(rows)


CASES = [(m, k) for m, d in DATA["models"].items() for k in d["published_bits"]]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("model,case", CASES)
def test_reproduces_published_bit_assignment(model, case, solver):
    d = DATA["models"][model]
    metric, frac = case.split("_")
    table = hawq_table(d)
    col = COLUMN[metric]
    lo = table[table.format == "int4"][col].sum()
    hi = table[table.format == "int8"][col].sum()
    limit = lo + float(frac) * (hi - lo)  # HAWQ's limit: a fraction of the way from all-INT4 to all-INT8
    ties = [[f"L{i}", f"L{j}"] for i, j in d["ties"]]
    sol = solve(table, {col: limit}, ties=ties, solver=solver)
    assert sol.status == "optimal"
    ours = [int(sol.assignments[f"L{i}"][3:]) for i in range(len(d["parameters"]))]
    published = d["published_bits"][case]
    pub = {f"L{i}": f"int{b}" for i, b in enumerate(published)}
    pub_rows = table.set_index(["site", "format"]).loc[list(pub.items())]
    assert pub_rows[col].sum() <= limit  # the published plan fits the published limit
    if (model, case) in NOT_OPTIMAL:
        assert sol.objective < pub_rows.omega.sum() - 1e-3
        assert sum(a != b for a, b in zip(ours, published)) == 1
    else:
        assert ours == published
        assert sol.objective == pytest.approx(pub_rows.omega.sum(), rel=1e-12)
