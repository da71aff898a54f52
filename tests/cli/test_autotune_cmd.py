"""`mpsearch autotune`: the knobs' configurations measured on held-out data; the best plan is written."""

import pandas as pd

from mpsearch import Plan
from mpsearch.cli import main


def test_autotune_writes_the_best_plan_and_the_trials(tmp_path, capsys):
    out, csv = tmp_path / "best.json", tmp_path / "trials.csv"
    assert main(["autotune", "--example", "digits-cnn", "--budget", "3bits", "--knobs", "aggregate",
                 "--estimator-option", "max_probes=4", "--trials-csv", str(csv), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    trials = pd.read_csv(csv)
    assert sorted(trials["aggregate"]) == ["lp:2", "max", "sum"]  # 3 options <= 24 trials: all enumerated
    best = trials.loc[trials.held_out_cross_entropy.idxmin()]
    assert f"best of every configuration on held-out cross_entropy: aggregate={best['aggregate']!r}" in printed
    plan = Plan.load(out)
    assert plan.totals["avg_bits"] <= 3 + 1e-9 and plan.totals["avg_bits"] == best.avg_bits


def test_autotune_unknown_knob_is_one_line(capsys):
    assert main(["autotune", "--example", "digits-cnn", "--budget", "3bits", "--knobs", "aggregat"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'aggregate'" in err
