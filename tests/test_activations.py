"""Activation quantization: calibrated per-tensor scales stored in the plan, realized by apply."""

import math

import pytest
import torch

import mpsearch
from mpsearch.activations import calibrate, has_act_nodes, plan_params
from mpsearch.apply import quantized
from mpsearch.data import as_data
from mpsearch.errors import PlanError
from mpsearch.formats import get_format


def _inputs_of(model, site, data):
    """Every input the site's module sees on `data` (captured independently with a plain hook)."""
    seen = []
    h = model.get_submodule(site).register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().clone()))
    with torch.no_grad():
        for b in as_data(data):
            model(b.x)
    h.remove()
    return torch.cat([s.reshape(-1) for s in seen])


def test_minmax_percentile_mse_calibration(digits):
    m, cal = digits.model, digits.calibration
    acts = _inputs_of(m, "classifier.1", cal)
    fmts = [get_format(n) for n in ["int8", "int8_p999", "int8_mse", "int8_asym", "fp8_e4m3", "fp8_e5m2_mse"]]
    p = calibrate(m, as_data(cal), {"classifier.1": fmts})["classifier.1"]
    amax = float(acts.abs().max())
    assert p["int8"]["scale"] == pytest.approx(amax / 127, rel=1e-7)  # min-max: exact
    assert p["fp8_e4m3"]["scale"] == pytest.approx(amax / 448, rel=1e-7)
    lo, hi = float(acts.min()), float(acts.max())
    assert p["int8_asym"]["scale"] == pytest.approx((hi - min(lo, 0)) / 255, rel=1e-7)
    assert p["int8_asym"]["zero"] == round(-min(lo, 0) / p["int8_asym"]["scale"])
    assert p["int8_p999"]["scale"] < p["int8"]["scale"]  # a percentile clips the tail
    assert p["int8_mse"]["scale"] <= p["int8"]["scale"]

    def err(name):
        return float((get_format(name).act_quantize(acts, p[name]) - acts).pow(2).mean())

    assert err("int8_mse") <= err("int8")  # MSE calibration on (a sample of) the same activations


def test_plan_stores_scales_and_apply_needs_no_data(digits, tmp_path):
    m = digits.model
    plan = mpsearch.Plan.from_assignments(m, {"classifier.1": "int8:int8", "features.3": "mxfp4:fp8_e4m3",
                                              "classifier.3": "int4"}, data=digits.calibration)
    rec = plan.sites["classifier.1"]
    assert rec["act_format"] == "int8" and rec["act_scale"] > 0 and "act_zero" not in rec
    assert "act_scale" not in plan.sites["classifier.3"]
    path = plan.save(tmp_path / "plan.json")
    q = mpsearch.apply(m, mpsearch.Plan.load(path))
    x = torch.as_tensor(digits.test["x"][:64])
    seen = _inputs_of(q, "classifier.1", x)
    s = rec["act_scale"]
    k = seen / s  # codes, up to the rounding of q·s / s in float32
    assert float((k - k.round()).abs().max()) < 1e-4 and float(k.abs().max()) <= 127.0001
    assert torch.equal(get_format("int8").act_quantize(seen, {"scale": s}), seen)  # the input is on the INT8 grid
    seen3 = _inputs_of(q, "features.3", x)
    p3 = {"scale": plan.sites["features.3"]["act_scale"]}
    assert torch.equal(get_format("fp8_e4m3").act_quantize(seen3, p3), seen3)  # already on the E4M3 grid
    assert len((seen3 / p3["scale"]).unique()) <= 255
    # a weight-only site sees a full-precision input; the original model carries no hooks
    assert len(_inputs_of(q, "classifier.3", x).unique()) > 1000
    assert not m.classifier[1]._forward_pre_hooks


def test_quantized_context_measures_activation_quantization_and_restores(digits):
    m = digits.model
    data = as_data(digits.calibration)
    x = torch.as_tensor(digits.test["x"][:128])
    fp = m(x)
    plan = mpsearch.Plan.from_assignments(m, {"classifier.1": "int3:int3"}, data=data)
    with quantized(m, {"classifier.1": "int3:int3"}, plan_params(plan.sites)):
        y_act = m(x)
    with quantized(m, {"classifier.1": "int3"}):
        y_w = m(x)
    assert torch.equal(m(x), fp) and not m.classifier[1]._forward_pre_hooks
    assert not torch.equal(y_act, y_w)  # the activation part changed the output
    applied = mpsearch.apply(m, plan)(x)
    with quantized(m, plan.assignments, plan_params(plan.sites)):
        assert torch.equal(m(x), applied)
    with quantized(m, {"classifier.1": "int3:int3"}, data=data):  # calibrated on the fly from data
        assert torch.equal(m(x), y_act)
    with pytest.raises(PlanError, match="activation scale"):
        with quantized(m, {"classifier.1": "int3:int3"}):
            pass


def test_from_assignments_needs_data_for_activation_choices(digits):
    with pytest.raises(PlanError, match="pass data="):
        mpsearch.Plan.from_assignments(digits.model, {"classifier.1": "int8:int8"})


def test_torch_export_graph_matches_module_and_survives_save(digits, tmp_path):
    m = digits.model
    x = torch.as_tensor(digits.calibration["x"][:8])
    ep = torch.export.export(m, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    gm = ep.module()
    assign = {"features.0": "int8:int8", "features.3": "mxfp4:fp8_e4m3",
              "classifier.1": "int4_asym_g64:int8_asym"}
    plan = mpsearch.Plan.from_assignments(m, assign, data=digits.calibration)
    plan_g = mpsearch.Plan.from_assignments(gm, assign, data=digits.calibration)
    for s in assign:
        assert plan.sites[s].get("act_scale") == plan_g.sites[s].get("act_scale")
    xt = torch.as_tensor(digits.test["x"][:100])
    q_mod, q_graph = mpsearch.apply(m, plan), mpsearch.apply(gm, plan)
    assert has_act_nodes(q_graph) and not has_act_nodes(gm)
    assert torch.equal(q_graph(xt), q_mod(xt))
    with quantized(gm, plan.assignments, plan_params(plan.sites)):
        assert torch.equal(gm(xt), q_mod(xt))
    assert torch.equal(gm(xt), m(xt)) and not has_act_nodes(gm)  # the graph is restored
    # `mpsearch apply` on a .pt2 re-exports the graph with its fake-quant nodes
    from mpsearch.cli import main

    torch.export.save(ep, tmp_path / "m.pt2")
    plan.save(tmp_path / "p.json")
    out = str(tmp_path / "q.pt2")
    assert main(["apply", str(tmp_path / "m.pt2"), str(tmp_path / "p.json"), "-o", out]) == 0
    reloaded = torch.export.load(tmp_path / "q.pt2").module()
    assert torch.equal(reloaded(xt), q_mod(xt))


def test_embedding_sites_skip_the_activation_part():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(50, 16), torch.nn.Flatten(), torch.nn.Linear(64, 4))
    ids = torch.randint(0, 50, (32, 4))
    plan = mpsearch.Plan.from_assignments(model, {"0": "int8:int8", "2": "int8:int8"}, data=ids)
    assert "act_scale" not in plan.sites["0"] and plan.sites["2"]["act_scale"] > 0
    q = mpsearch.apply(model, plan)
    with torch.no_grad():
        assert math.isfinite(float(q(ids).sum()))
