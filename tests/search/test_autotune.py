"""Autotuning picks the configuration that measures best on held-out data; knobs come from registries."""

from __future__ import annotations

import pytest
import torch

import mpsearch
from mpsearch.api import autotune
from mpsearch.planner.autotune import FormatVariantKnob, TuneContext, knob_names, split
from mpsearch.sensitivity import _base as sens_base
from mpsearch.sensitivity.hessian import HessianTrace

FAST = {"max_probes": 12}


def _held_out_ce(model, plan, data) -> float:
    """The plan's cross-entropy on `data`, measured here (apply + measure), not read from autotune's table."""
    from mpsearch.objectives import measure

    return measure(mpsearch.apply(model, plan), data, ["cross_entropy"])["cross_entropy"]


def test_exhaustive_autotune_keeps_the_best_held_out_configuration(mlp):
    formats = ["int2", "int3", "int4", "int8"]
    n_space = len(FormatVariantKnob().options(TuneContext(formats, True))) * 3  # x {sum, lp:2, max}
    r = autotune(mlp.model, mlp.calibration, "3.5bits", formats=formats,
                 knobs=["format_variant", "aggregate"], estimator_settings=FAST, trials=n_space)
    assert r.settings["exhaustive"]
    space = r.settings["space"]
    assert len(r.trials) == len(space["format_variant"]) * len(space["aggregate"])
    assert not r.trials.duplicated(["format_variant", "aggregate"]).any()
    assert r.plan.totals["avg_bits"] <= 3.5 + 1e-9
    # independent reference: plan the default configuration with plain mpsearch.plan on the same split, and
    # measure both plans on the held-out part ourselves
    head, tail = split(mlp.calibration, 0.25)
    default = mpsearch.plan(mlp.model, head, "3.5bits", formats=formats, guard_uniform=False,
                            estimator_settings=FAST)
    chosen, base = _held_out_ce(mlp.model, r.plan, tail), _held_out_ce(mlp.model, default, tail)
    assert chosen <= base + 1e-12
    assert chosen == pytest.approx(r.trials["held_out_cross_entropy"].min(), rel=1e-9)  # the table is honest
    if r.best != {"format_variant": "", "aggregate": "sum"}:  # it moved: the default is measurably worse
        assert chosen < base


def test_tpe_autotune_is_reproducible(mlp):
    runs = [autotune(mlp.model, mlp.calibration, "3.5bits", formats=["int2", "int3", "int4", "int8"],
                     knobs=["format_variant", "aggregate", "sensitivity_loss"], estimator_settings=FAST,
                     trials=5, seed=1) for _ in range(2)]
    assert not runs[0].settings["exhaustive"] and len(runs[0].trials) == 5
    assert not runs[0].trials.duplicated(["format_variant", "aggregate", "sensitivity_loss"]).any()  # each once
    cols = ["format_variant", "aggregate", "sensitivity_loss", "held_out_cross_entropy"]
    assert runs[0].trials[cols].equals(runs[1].trials[cols])


def test_knob_options_come_from_the_registries(monkeypatch):
    opts = FormatVariantKnob().options(TuneContext(["int2", "int4", "bf16"], True))
    assert opts[0] == "" and {"_pt", "_g128"} <= set(opts)

    class Other(HessianTrace):
        name = "other-estimator"

    monkeypatch.setitem(sens_base._REGISTRY, "other-estimator", Other)
    from mpsearch.planner.autotune import EstimatorKnob

    assert {"hessian", "other-estimator"} <= set(EstimatorKnob().options(TuneContext(["int4"], True)))
    assert {"estimator", "format_variant", "sensitivity_loss", "aggregate"} <= set(knob_names())


def test_split_holds_out_a_seeded_random_quarter():
    """Labels sorted by class: the last quarter would be one class; a seeded random hold-out is not."""
    x = torch.arange(200, dtype=torch.float32).reshape(-1, 1)
    y = torch.arange(200) // 50  # classes 0..3, in order
    head, tail = split({"x": x, "y": y}, 0.25, seed=3)
    assert (head.num_samples, tail.num_samples) == (150, 50)
    rows = torch.cat([b.x for b in head] + [b.x for b in tail]).reshape(-1).long()
    assert sorted(rows.tolist()) == list(range(200))  # a partition
    assert len(set(torch.cat([b.y for b in tail]).tolist())) == 4  # every class held out, not just the last
    again = split({"x": x, "y": y}, 0.25, seed=3)[1]
    assert torch.equal(torch.cat([b.x for b in again]), torch.cat([b.x for b in tail]))
    assert not torch.equal(torch.cat([b.x for b in split({"x": x, "y": y}, 0.25, seed=4)[1]]),
                           torch.cat([b.x for b in tail]))
    with pytest.raises(Exception, match="cannot hold out"):
        split({"x": x, "y": y}, 1.0)


def test_activation_calibration_is_a_knob(mlp):
    """With WEIGHT:ACT choices the activation calibration method (min-max, MSE, percentile) is tuned, and the
    winner's plan carries it; without them the knob has one option and drops out of the space."""
    from mpsearch.planner.autotune import ActCalibrationKnob

    assert ActCalibrationKnob().options(TuneContext(["int2", "int4"], True)) == [""]
    formats = ["int2:int8", "int4:int8", "int8:int8"]
    r = autotune(mlp.model, mlp.calibration, "4bits", formats=formats, knobs=["act_calibration", "aggregate"],
                 estimator_settings=FAST, trials=64)
    methods = r.settings["space"]["act_calibration"]
    assert {"", "_mse", "_p9999"} <= set(methods) and r.settings["exhaustive"]
    assert len(r.trials) == len(methods) * 3
    head, tail = split(mlp.calibration, 0.25)
    for m in methods:  # every calibration method, planned and measured independently, is no better
        alt = mpsearch.plan(mlp.model, head, "4bits", formats=[f + m for f in formats], guard_uniform=False,
                            estimator_settings=FAST, search_settings={"aggregate": r.best["aggregate"]})
        assert _held_out_ce(mlp.model, r.plan, tail) <= _held_out_ce(mlp.model, alt, tail) + 1e-12, m
    suffix = r.best["act_calibration"]
    assert all(f.endswith(":int8" + suffix) for f in r.plan.assignments.values())
    # the calibration method changes the activation scales the plan stores
    scales = {m: r.trials.loc[r.trials.act_calibration == m, "held_out_cross_entropy"].min() for m in methods}
    assert len(set(scales.values())) > 1
