"""The Pareto front on the bundled digits CNN dominates uniform precision, and is saved and plotted."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mpsearch.api import pareto
from mpsearch.cli import main
from mpsearch.planner.pareto import non_dominated


def test_non_dominated():
    cost = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    loss = np.array([5.0, 3.0, 4.0, 3.0, 1.0])
    assert non_dominated(cost, loss).tolist() == [True, True, False, False, True]


def test_front_dominates_uniform_precision(cnn, cnn_sens, tmp_path):
    front = pareto(cnn.model, cnn.calibration, sensitivity=cnn_sens, points=4, test=cnn.test)
    dom = front.dominance()
    assert set(dom.uniform) == {f"uniform {f}" for f in ["int2", "int3", "int4", "int5", "int6", "int8", "bf16"]}
    assert dom.dominated.all()  # at every uniform plan's cost a mixed plan measures at least as well
    assert dom[dom.uniform.isin(["uniform int3", "uniform int4"])].strictly.all()  # and strictly where it matters
    plans = front.points[front.points.kind == "plan"]
    # a larger budget whose plan measures worse than a smaller one's takes that plan (listed once): on the
    # digits CNN every budget above the int4-sized plan's carries it, which leaves 3 distinct plans
    assert len(plans) >= 3 and plans.cost.is_unique
    assert np.all(np.diff(plans.sort_values("budget").cal_cross_entropy.to_numpy()) <= 1e-12)
    assert front.front.cal_cross_entropy.is_monotonic_decreasing  # cheaper points on the front measure worse
    paths = front.save(tmp_path / "front")
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 10_000
    saved = pd.read_csv(paths["csv"])
    assert len(saved) == len(front.points)
    assert json.loads(saved.assignments.iloc[0]) == front.points.assignments.iloc[0]


def test_pareto_cli(tmp_path, capsys):
    out = tmp_path / "sweep"
    rc = main(["pareto", "--example", "digits-cnn", "--points", "3", "--formats", "int2,int4,int8",
               "--estimator-option", "max_probes=6", "-o", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "uniform int4" in printed and "dominated" in printed
    assert (tmp_path / "sweep.png").is_file() and (tmp_path / "sweep.csv").is_file()
