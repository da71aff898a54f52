"""Fisher / first-order Taylor / output-side scores equal their brute-force per-sample definitions."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpsearch.data import as_data
from mpsearch.errors import UsageError
from mpsearch.formats import parse_choices
from mpsearch.model import sites
from mpsearch.objectives import get_objective
from mpsearch.sensitivity import get_estimator


def _setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 4)).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 6, generator=g), torch.randint(0, 4, (30,), generator=g)
    return model, x, y


def _run(name, model, data, choices, objective="cross_entropy", **settings):
    obj = get_objective(objective)
    if obj.needs_reference:
        data = data.with_reference(model)
    site_list = sites(model, data.first_x)
    return get_estimator(name, **settings).estimate(
        model, site_list, parse_choices(choices, []), data, obj
    ), site_list


def _per_sample_grads(model, x, y, site_list):
    ps = [model.get_parameter(s.param) for s in site_list]
    return [
        [g.detach() for g in torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), ps)]
        for i in range(len(x))
    ]


def test_empirical_fisher_matches_per_sample_squared_gradients():
    model, x, y = _setup()
    table, site_list = _run("fisher", model, as_data((x, y), 7), "int2,int4")
    assert table.settings["fisher"] == "empirical"
    grads = _per_sample_grads(model, x, y, site_list)
    for j, s in enumerate(site_list):
        w = model.get_parameter(s.param).detach()
        fdiag = torch.stack([g[j] for g in grads]).pow(2).mean(0)
        for fmt in ("int2", "int4"):
            from mpsearch.formats import get_format

            dw = get_format(fmt).quantize(w) - w
            expect = 0.5 * float((fdiag * dw.pow(2)).sum())
            assert table.omega(s.name, fmt) == pytest.approx(expect, rel=1e-4)
    assert (table.frame.omega_se > 0).all()


def test_first_order_taylor_is_abs_gradient_dot_perturbation():
    model, x, y = _setup()
    table, site_list = _run("taylor", model, as_data((x, y), 7), "int3")
    from mpsearch.formats import get_format

    loss = F.cross_entropy(model(x), y)
    ps = [model.get_parameter(s.param) for s in site_list]
    for s, g in zip(site_list, torch.autograd.grad(loss, ps), strict=False):
        w = model.get_parameter(s.param).detach()
        assert table.omega(s.name, "int3") == pytest.approx(
            abs(float((g * (get_format("int3").quantize(w) - w)).sum())), rel=1e-4
        )


def test_output_score_covers_weight_and_activation_quantization():
    model, x, y = _setup()
    table, site_list = _run("output", model, as_data((x, y), 30), "int4,int4:int4")
    from mpsearch.formats import get_choice, get_format

    # brute force on the first site: ½ Σ_x (∂ℓ_x/∂Y)² (Y_q − Y)², Y_q with weight and input quantized
    # (the input uses the calibrated per-tensor scale that `apply` would use)
    lin = model[0]
    q4, act = get_format("int4"), get_choice("int4:int4").act
    yfp = lin(x)
    dl = torch.autograd.grad(F.cross_entropy(model[2](model[1](yfp)), y, reduction="sum"), yfp)[0]
    for name, xin in (("int4", x), ("int4:int4", act.act_quantize(x, act.calibrate(x)))):
        yq = F.linear(xin, q4.quantize(lin.weight.detach()), lin.bias)
        expect = 0.5 * float((dl.pow(2) * (yq - yfp).pow(2)).sum().detach()) / len(x)
        assert table.omega(site_list[0].name, name) == pytest.approx(expect, rel=1e-4)
    assert table.omega(site_list[0].name, "int4:int4") > table.omega(site_list[0].name, "int4")


def test_label_free_fisher_uses_the_models_own_fisher():
    model, x, _ = _setup()
    table, _ = _run("fisher", model, as_data(x), "int2", objective="kl")
    assert table.settings["fisher"] == "true" and (table.frame.omega > 0).all()
    taylor, _ = _run("taylor", model, as_data(x), "int2", objective="kl")
    assert (taylor.frame.omega < 1e-6 * table.frame.omega.max()).all()  # zero gradient at the FP point


def test_models_without_per_sample_support_get_a_clear_error():
    lin = nn.Linear(3, 3)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    with pytest.raises(UsageError, match="hessian or measured"):
        _run("fisher", Twice(), as_data((torch.randn(8, 3), torch.randint(0, 3, (8,)))), "int4")
