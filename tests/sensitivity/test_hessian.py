"""Per-site Hessian traces agree with the exact Hessian (torch.autograd.functional.hessian)."""

import pytest
import torch
from torch import nn

import mpsearch
import mpsearch.examples
from mpsearch.data import as_data
from mpsearch.model import sites
from mpsearch.objectives import get_objective
from mpsearch.sensitivity import get_estimator
from mpsearch.sensitivity.hessian import data_loss


def exact_block_traces(model, data, objective, site_list):
    """Tr of each site's diagonal Hessian block, from the full Hessian of the data loss."""
    out = []
    for s in site_list:
        p = model.get_parameter(s.param)
        w0 = p.detach().clone()

        def f(w, p=p, s=s):
            return data_loss(
                model,
                data,
                objective,
                call=lambda x: torch.func.functional_call(model, {s.param: w.reshape(p.shape)}, (x,)),
            )

        h = torch.autograd.functional.hessian(f, w0.reshape(-1))
        out.append(float(torch.diagonal(h).sum()))
    return torch.tensor(out, dtype=torch.float64)


def tanh_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 4)).eval()


def relu_cnn():
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 16, 3),
    ).eval()


def _data(shape, classes, n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return as_data((torch.randn((n, *shape), generator=g), torch.randint(0, classes, (n,), generator=g)), 16)


def _estimate(model, data, objective="cross_entropy", **settings):
    obj = get_objective(objective)
    if obj.needs_reference:
        data = data.with_reference(model)
    site_list = sites(model, data.first_x)
    table = get_estimator("hessian", **settings).estimate(
        model, site_list, mpsearch.formats.parse_choices("int4", []), data, obj, seed=3
    )
    return table, site_list, data, obj


@pytest.mark.parametrize("hvp", ["func", "double"])
def test_hutchinson_matches_exact_hessian_within_error_bars(hvp):
    model, data = tanh_mlp(), _data((6,), 4)
    table, site_list, data, obj = _estimate(model, data, tol=0.1, max_probes=1500, hvp=hvp)
    assert table.settings["method"] == "hutchinson"  # tanh: the GGN is not the Hessian here
    info = table.site_info
    exact = exact_block_traces(model, data, obj, site_list)
    z = (torch.tensor(info.trace.values) - exact).abs() / torch.tensor(info.trace_se.values)
    assert (z < 4).all(), (info, exact)
    assert ((info.trace_se / info.trace.abs() <= 0.1) | (info.probes == 1500)).all()
    assert (info.probes < 1500).any()  # adaptive: a converged site stops being probed


def test_ggn_is_chosen_and_exact_for_a_piecewise_linear_cnn():
    model, data = relu_cnn(), _data((2, 8, 8), 3)
    table, site_list, data, obj = _estimate(model, data)
    assert table.settings["method"] == "ggn"
    exact = exact_block_traces(model, data, obj, site_list)
    torch.testing.assert_close(torch.tensor(table.site_info.trace.values), exact, rtol=1e-4, atol=1e-7)
    assert (table.site_info.trace_se == 0).all()


def test_ggn_is_exact_for_label_free_kl_on_a_nonlinear_model():
    model, data = tanh_mlp(), _data((6,), 4)
    table, site_list, data, obj = _estimate(model, as_data(torch.cat([b.x for b in data])), objective="kl")
    assert table.settings["method"] == "ggn"
    exact = exact_block_traces(model, data, obj, site_list)
    torch.testing.assert_close(torch.tensor(table.site_info.trace.values), exact, rtol=1e-4, atol=1e-8)


def test_sampled_ggn_for_wide_outputs_is_within_error_bars():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 80)).eval()  # 80 outputs > 64: sampled
    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(1))
    table, site_list, data, obj = _estimate(model, as_data(x), objective="mse", tol=0.02, max_probes=2000)
    info = table.site_info
    # the last layer's sampled columns all have the same norm (√(2w)·±1): zero variance, exact
    assert table.settings["method"] == "ggn" and info.trace_se[0] > 0 and info.trace_se[1] == 0
    exact = exact_block_traces(model, data, obj, site_list)
    assert (
        (torch.tensor(info.trace.values) - exact).abs() <= 4 * torch.tensor(info.trace_se.values) + 1e-5
    ).all()


def test_token_outputs_use_sampled_columns_and_match_exact():
    class Tok(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(4)
            self.emb, self.l1, self.l2 = nn.Embedding(9, 6), nn.Linear(6, 8), nn.Linear(8, 5)

        def forward(self, ids):
            return self.l2(torch.relu(self.l1(self.emb(ids))))

    g = torch.Generator().manual_seed(0)
    ids, y = torch.randint(0, 9, (24, 5), generator=g), torch.randint(0, 5, (24, 5), generator=g)
    model = Tok().eval()
    table, site_list, data, obj = _estimate(model, as_data((ids, y)), tol=0.02, max_probes=3000)
    info = table.site_info
    assert table.settings["method"] == "ggn" and (info.trace_se > 0).all()
    exact = exact_block_traces(model, data, obj, site_list)
    assert ((torch.tensor(info.trace.values) - exact).abs() < 4 * torch.tensor(info.trace_se.values)).all()


def test_digits_default_uses_ggn_and_meets_tolerance():
    ex = mpsearch.examples.load_example("digits-cnn")
    t = mpsearch.sensitivity(ex.model, ex.calibration, formats="int2,int4,int8")
    assert t.settings["method"] == "ggn"
    assert len(t.frame) == 15 and (t.frame.omega > 0).all()
    assert (t.site_info.trace_se <= 0.05 * t.site_info.trace).all()  # 10 classes > 8: sampled columns, to tol
    # Ω falls with bits at every site
    p = t.pivot()
    assert ((p["int2"] > p["int4"]) & (p["int4"] > p["int8"])).all()


def test_unknown_method_is_a_usage_error():
    model, data = tanh_mlp(), _data((6,), 4)
    with pytest.raises(mpsearch.errors.UsageError, match="method"):
        _estimate(model, data, method="lanczos")


def test_a_negative_trace_is_not_free_int2(caplog):
    """At this random init the first layer's exact Hessian trace is negative: Ω must not be 0 there
    (int2 for free) but |Tr|/n·‖ΔW‖², with a warning naming the site."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).eval()
    data = _data((3,), 2, n=16, seed=4)
    with caplog.at_level("WARNING", logger="mpsearch"):
        table, site_list, data, obj = _estimate(model, data, tol=0.2, max_probes=200)
    exact = exact_block_traces(model, data, obj, site_list)
    info = table.site_info
    assert exact[0] < 0 and float(info.trace[0]) < 0
    omega = table.frame.set_index("site").omega
    assert omega["0"] > 0
    assert "negative Hessian trace (0)" in caplog.text


def test_a_missed_tolerance_is_reported(caplog):
    model, data = tanh_mlp(), _data((6,), 4)
    with caplog.at_level("WARNING", logger="mpsearch"):
        _estimate(model, data, tol=0.001, min_probes=2, max_probes=4)
    assert "--tol 0.001 not reached" in caplog.text and "max_probes=4" in caplog.text


class TiedHead(nn.Module):
    """The usual tied LM head: logits = F.linear(h, emb.weight), h made from emb as well."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.emb = nn.Embedding(7, 5)
        self.mix = nn.Linear(5, 5)

    def forward(self, ids):
        return torch.nn.functional.linear(torch.relu(self.mix(self.emb(ids))), self.emb.weight)


def test_a_tied_head_is_not_an_exact_ggn_site():
    """GGN ≠ Hessian when one weight is on both ends (the default gave half the exact trace)."""
    from mpsearch.sensitivity.hessian import ggn_is_exact

    model = TiedHead().eval()
    g = torch.Generator().manual_seed(0)
    data = as_data((torch.randint(0, 7, (16,), generator=g), torch.randint(0, 7, (16,), generator=g)), 16)
    obj = get_objective("cross_entropy")
    for p in model.parameters():
        p.requires_grad_(True)
    exact, why = ggn_is_exact(model, data, obj)
    assert not exact and "same weight" in why
    table, site_list, data, obj = _estimate(model, data, tol=0.1, max_probes=300)
    assert table.settings["method"] == "hutchinson"
    truth = exact_block_traces(model, data, obj, [s for s in site_list if s.param == "emb.weight"])
    info = table.site_info.set_index("site")
    assert abs(info.trace["emb"] - float(truth[0])) < 4 * info.trace_se["emb"]


def test_an_exported_cnn_is_recognised_as_piecewise_linear():
    """Graph nodes are `aten.conv2d.default`; the check must see `conv2d` (else every .pt2 probes)."""
    from mpsearch.sensitivity._structure import nonlinear_ops

    model = relu_cnn()
    x = torch.randn(4, 2, 8, 8)
    gm = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("b")},)).module()
    for p in gm.parameters():
        p.requires_grad_(True)
    assert nonlinear_ops(gm, x) == []
    table, *_ = _estimate(gm, _data((2, 8, 8), 3, n=8))
    assert table.settings["method"] == "ggn"
    as_module, *_ = _estimate(model, _data((2, 8, 8), 3, n=8))
    assert table.site_info.trace.tolist() == pytest.approx(as_module.site_info.trace.tolist(), rel=1e-5)


def test_second_order_through_sdpa_attention_runs_on_cpu():
    """HF GPT-2 uses scaled_dot_product_attention; its fused CPU kernel has no double backward. The
    estimator runs attention through the math kernel, so Hutchinson works (it raised before)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=50,
                                  bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 50, (4, 6), generator=torch.Generator().manual_seed(0))
    table, site_list, *_ = _estimate(model, as_data(ids), objective="kl", method="hutchinson",
                                     min_probes=2, max_probes=4)
    assert len(site_list) == 6 and table.site_info.trace.notna().all()
