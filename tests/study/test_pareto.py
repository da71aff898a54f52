"""Pareto extraction against brute force and against Optuna's own multi-objective best_trials."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from mpsearch.errors import UsageError
from mpsearch.study import pareto_front, pareto_mask


def brute_force(v: np.ndarray, maximize) -> np.ndarray:
    sign = np.where(maximize, -1.0, 1.0)
    w = v * sign
    keep = []
    for i in range(len(w)):
        dominated = False
        for j in range(len(w)):
            if j != i and all(w[j] <= w[i]) and any(w[j] < w[i]):
                dominated = True
                break
        keep.append(not dominated)
    return np.array(keep)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_mask_equals_brute_force(k, seed):
    rng = np.random.default_rng(seed)
    v = rng.integers(0, 6, size=(60, k)).astype(float)  # small integers: many ties and duplicates
    maximize = list(rng.integers(0, 2, size=k).astype(bool))
    assert (pareto_mask(v, maximize) == brute_force(v, maximize)).all()


def test_hand_worked_front_with_mixed_directions_and_duplicates():
    df = pd.DataFrame({"bytes": [10, 20, 20, 30, 15, 10], "accuracy": [0.5, 0.9, 0.9, 0.95, 0.4, 0.5],
                       "name": list("abcdef")})
    front = pareto_front(df, ["bytes:min", "accuracy:max"])
    # e is dominated by a (smaller and more accurate); b and c tie, as do a and f: all of them stay.
    assert sorted(front.name) == ["a", "b", "c", "d", "f"]
    assert front.bytes.tolist() == sorted(front.bytes)
    flipped = pareto_front(df, {"bytes": "max", "accuracy": "min"})
    assert sorted(flipped.name) == ["b", "c", "d", "e"]  # a, f: e has more bytes and less accuracy


def test_fronts_per_group_and_failed_rows_left_out():
    df = pd.DataFrame({"est": ["x", "x", "y", "y", "y"], "bytes": [1, 2, 1, 2, 3],
                       "acc": [0.5, 0.4, 0.3, 0.6, np.nan]})
    front = pareto_front(df, ["bytes:min", "acc:max"], by=["est"])
    assert list(zip(front.est, front.bytes, strict=True)) == [("x", 1), ("y", 1), ("y", 2)]
    with pytest.raises(UsageError, match="no column 'latency'"):
        pareto_front(df, ["latency", "acc:max"])
    with pytest.raises(UsageError, match="must be min or max"):
        pareto_front(df, ["bytes:smallest"])


def test_agrees_with_optuna_best_trials():
    rng = np.random.default_rng(0)
    study = optuna.create_study(directions=["minimize", "maximize", "minimize"])
    values = rng.integers(0, 8, size=(80, 3)).astype(float)
    for v in values:
        study.add_trial(optuna.trial.create_trial(values=list(v), params={}, distributions={}))
    ours = set(np.flatnonzero(pareto_mask(values, [False, True, False])))
    assert ours == {t.number for t in study.best_trials}
