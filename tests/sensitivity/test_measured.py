"""The measured estimator equals the objective change of single-site quantization."""

import pytest
import torch
from torch import nn

from mpsearch.apply import quantized
from mpsearch.data import as_data
from mpsearch.formats import parse_choices
from mpsearch.model import sites
from mpsearch.objectives import get_objective, measure
from mpsearch.sensitivity import get_estimator


def test_measured_is_the_loss_change_and_activation_choices_count():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    g = torch.Generator().manual_seed(0)
    data = as_data((torch.randn(64, 5, generator=g), torch.randint(0, 3, (64,), generator=g)), 16)
    obj = get_objective("cross_entropy")
    site_list = sites(model, data.first_x)
    choices = parse_choices("int2,int4,int3:int2", [])
    table = get_estimator("measured", micro_batch=16).estimate(model, site_list, choices, data, obj)
    fp = measure(model, data, ["cross_entropy"])["cross_entropy"]
    for s in site_list:
        with quantized(model, {s.name: "int2"}):
            q = measure(model, data, ["cross_entropy"])["cross_entropy"]
        assert table.omega(s.name, "int2") == pytest.approx(q - fp, rel=1e-5, abs=1e-9)
        # the activation scale is calibrated on the same data, as `apply` would use it
        with quantized(model, {s.name: "int3:int2"}, data=data):
            qa = measure(model, data, ["cross_entropy"])["cross_entropy"]
        assert table.omega(s.name, "int3:int2") == pytest.approx(qa - fp, rel=1e-5, abs=1e-9)
        assert table.omega(s.name, "int3:int2") != table.omega(s.name, "int4")
    # the model is restored, and error bars exist
    assert measure(model, data, ["cross_entropy"])["cross_entropy"] == pytest.approx(fp)
    assert (table.frame.omega_se > 0).all()
