"""Fisher / first-order Taylor / output-side scores equal their brute-force per-sample definitions."""

import numpy as np
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


def _digits_tables(model, ex, **settings):
    from mpsearch.data import as_data

    data = as_data((ex.calibration["x"], ex.calibration["y"]))
    site_list = sites(model, ex.calibration["x"][:2])
    choices = parse_choices("int4,int8,int4:int8", [])
    obj = get_objective("cross_entropy")
    return {n: get_estimator(n, progress=False, max_samples=60, **settings)
            .estimate(model, site_list, choices, data, obj).frame for n in ("fisher", "taylor", "output")}


@pytest.mark.parametrize("static", [False, True], ids=["dynamic-batch", "static-batch"])
def test_pt2_gives_the_modules_table_on_the_digits_cnn(digits, tmp_path, static):
    """Per-sample gradients come from the exported graph's op nodes: the same numbers as the nn.Module's hooks.
    A static-batch export (8 rows) runs micro-batches of 8, the last one padded; the padding rows are cut."""
    from mpsearch.loading import load_model

    x = digits.calibration["x"]
    model = digits.model.eval()
    shapes = None if static else ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(model, (x[:8],), dynamic_shapes=shapes), str(tmp_path / "d.pt2"))
    gm = load_model(tmp_path / "d.pt2").module
    on_module, on_pt2 = _digits_tables(model, digits), _digits_tables(gm, digits)
    for name, frame in on_module.items():
        other = on_pt2[name]
        assert list(other.site) == list(frame.site) and (frame.omega > 0).all()
        np.testing.assert_allclose(other.omega, frame.omega, rtol=1e-4, err_msg=name)
        np.testing.assert_allclose(other.omega_se, frame.omega_se, rtol=1e-3, err_msg=name)


@pytest.mark.parametrize("name", ["fisher", "taylor", "output"])
def test_micro_batches_give_the_one_batch_table_with_bounded_per_sample_storage(name, monkeypatch):
    """30 samples in one batch, scored 4 at a time: the same table, and no forward or per-sample product ever
    holds more than 4 samples' site inputs / outputs / output gradients (counted, not timed)."""
    from mpsearch.sensitivity import _persample
    from mpsearch.sensitivity.taylor import _GradientEstimator

    model, x, y = _setup()
    whole, _ = _run(name, model, as_data((x, y), 30), "int3,int4:int4", micro_batch=30)
    rows, elems = [], []
    hook, batch = _persample.SiteTap.hook, _GradientEstimator._batch

    def counted_hook(self, module, inputs, output):
        rows.append(output.shape[0])
        return hook(self, module, inputs, output)

    def counted_batch(self, taps, cols, dw, choices, out):
        elems.append(sum(t.inp.numel() + t.out.numel() for t in taps.taps) + sum(u.numel() for u, _ in cols))
        return batch(self, taps, cols, dw, choices, out)

    monkeypatch.setattr(_persample.SiteTap, "hook", counted_hook)
    monkeypatch.setattr(_GradientEstimator, "_batch", counted_batch)
    micro, _ = _run(name, model, as_data((x, y), 30), "int3,int4:int4", micro_batch=4)
    assert max(rows) == 4 and len(elems) == 8  # ceil(30 / 4) forwards of at most 4 samples
    per_sample = (6 + 10) + (10 + 4) + 4  # site inputs and outputs, and the output cotangent, per sample
    assert max(elems) <= 4 * per_sample
    np.testing.assert_allclose(micro.frame.omega, whole.frame.omega, rtol=1e-5)
    np.testing.assert_allclose(micro.frame.omega_se, whole.frame.omega_se, rtol=1e-5)


def test_micro_batch_must_be_positive():
    with pytest.raises(UsageError, match="micro_batch must be a positive number"):
        get_estimator("taylor", micro_batch=0)


class _Conv1DNet(nn.Module):
    """Hugging Face Conv1D's form: addmm(bias, x, W) with W stored (in, out)."""

    def __init__(self, lin: nn.Linear, head: nn.Linear):
        super().__init__()
        self.weight = nn.Parameter(lin.weight.detach().T.contiguous())
        self.bias = nn.Parameter(lin.bias.detach().clone())
        self.head = head

    def forward(self, x):
        return self.head(torch.tanh(torch.addmm(self.bias, x, self.weight)))


def test_an_addmm_site_in_a_pt2_is_scored_by_its_per_sample_definitions(tmp_path):
    """A `.pt2` of Hugging Face Conv1D's form: fisher, taylor and output on the addmm site equal their brute-force
    definitions on the stored (in, out) weight."""
    from mpsearch.formats import get_format
    from mpsearch.loading import load_model

    model, x, y = _setup()
    net = _Conv1DNet(model[0], model[2]).eval()
    torch.export.save(torch.export.export(net, (x[:2],), dynamic_shapes=({0: torch.export.Dim("b")},)),
                      str(tmp_path / "c.pt2"))
    gm = load_model(tmp_path / "c.pt2").module
    w = net.weight.detach()
    dw = get_format("int3").quantize(w) - w
    grads = [torch.autograd.grad(F.cross_entropy(net(x[i : i + 1]), y[i : i + 1]), net.weight)[0] for i in range(30)]
    z = torch.addmm(net.bias, x, net.weight)
    dl = torch.autograd.grad(F.cross_entropy(net.head(torch.tanh(z)), y, reduction="sum"), z)[0]
    expect = {"fisher": 0.5 * float((torch.stack(grads).pow(2).mean(0) * dw.pow(2)).sum()),
              "taylor": abs(float((torch.stack(grads).mean(0) * dw).sum())),
              "output": 0.5 * float((dl.pow(2) * (x @ dw).pow(2)).sum()) / len(x)}
    for name, value in expect.items():
        table, site_list = _run(name, gm, as_data((x, y), 7), "int3")
        assert site_list[0].param == "weight" and site_list[0].kind == "linear"
        assert table.omega(site_list[0].name, "int3") == pytest.approx(value, rel=1e-4), name
