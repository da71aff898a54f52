"""ZeroQ distilled data: BatchNorm statistics match, and data-free plans are as good as real-data plans."""

import pytest
import torch
from torch import nn

import mpsearch
import mpsearch.examples
from mpsearch.apply import apply
from mpsearch.errors import DataError
from mpsearch.objectives import measure
from mpsearch.sensitivity import distill


def _bn_gap(model, x):
    gaps = []

    def hook(m, args):
        a = args[0].transpose(0, 1).reshape(args[0].shape[1], -1)
        gaps.append(float((a.mean(1) - m.running_mean).pow(2).mean()))

    hs = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return sum(gaps)


def test_distilled_statistics_match_and_zeroq_plan_is_within_two_points():
    ex = mpsearch.examples.load_example("digits-cnn")
    data = distill(ex.model, (1, 8, 8), num_samples=128, steps=300)
    x = torch.cat([b.x for b in data])
    assert x.shape == (128, 1, 8, 8) and not data.labelled
    noise_gap = _bn_gap(ex.model, torch.randn(128, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert _bn_gap(ex.model, x) < 0.05 * noise_gap
    test = mpsearch.data.as_data(ex.test)
    real = mpsearch.plan(ex.model, ex.calibration, budget="4bits", cache=False)
    free = mpsearch.plan(ex.model, data, budget="4bits", estimator="measured", cache=False)
    assert free.provenance["objective"] == "kl" and free.totals["avg_bits"] <= 4.0
    acc_real = measure(apply(ex.model, real), test, ["accuracy"])["accuracy"]
    acc_free = measure(apply(ex.model, free), test, ["accuracy"])["accuracy"]
    assert acc_free >= acc_real - 0.02, (acc_free, acc_real)


def test_a_model_without_batchnorm_gets_a_clear_error():
    with pytest.raises(DataError, match="no BatchNorm"):
        distill(nn.Sequential(nn.Linear(3, 2)), (3,))
