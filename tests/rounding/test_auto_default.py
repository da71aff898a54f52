"""The default rounding and candidates (`rounding="auto"`, no formats, no hardware): GPTQ and group-wise
INT for a model of Linear layers (a transformer), RTN and per-channel INT for anything else (a CNN),
stated in the plan's provenance."""

import dataclasses

import pandas as pd
import pytest
import torch
from torch import nn

import mpsearch
from mpsearch.errors import PlanError, UsageError
from mpsearch.formats import DEFAULT_FORMATS, LINEAR_DEFAULT_FORMATS, get_format
from mpsearch.model import sites
from mpsearch.rounding import GPTQ_SETTINGS, Rounding, linear_model, resolve_auto


def _mlp(k=128):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(k, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(), nn.Linear(128, k)).eval()


def _data(k=128, n=256):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, k, generator=g) @ (torch.randn(k, k, generator=g) * 0.2 + torch.eye(k))


def test_auto_is_gptq_only_for_linear_layers_with_enough_inputs(digits_shared):
    x = _data()
    assert linear_model(sites(_mlp(), x))
    assert resolve_auto("auto", sites(_mlp(), x))[0] == "gptq"
    assert not linear_model(sites(_mlp(64), _data(64)))  # K = 64 < 128: group-128 formats do not fit
    cnn = sites(digits_shared.model, digits_shared.calibration["x"][:2])
    assert resolve_auto("auto", cnn)[0] == "rtn"
    assert resolve_auto("rtn", sites(_mlp(), x)) == ("rtn", "given")
    with pytest.raises(UsageError, match="auto, rtn, gptq"):
        resolve_auto("gptqq", cnn)


def test_default_plan_of_a_linear_model_is_group_wise_gptq_and_says_so():
    model, x = _mlp(), _data()
    plan = mpsearch.plan(model, x, budget="4.5bits", estimator_settings={"max_probes": 8}, max_evals=4)
    assert plan.provenance["rounding"] == "gptq"
    assert plan.provenance["rounding_from"].startswith("auto: gptq")
    assert plan.provenance["formats"] == LINEAR_DEFAULT_FORMATS
    assert plan.provenance["formats_from"] == "mpsearch default for Linear layers (no hardware target)"
    assert set(plan.assignments.values()) <= set(LINEAR_DEFAULT_FORMATS)
    assert plan.totals["avg_bits"] <= 4.5 + 1e-9
    assert plan.provenance["rounding_settings"] == GPTQ_SETTINGS  # act-order, damp 0.1: apply re-derives them
    with pytest.raises(PlanError, match="needs the calibration data"):  # GPTQ's weights need its inputs
        mpsearch.apply(model, plan)
    q = mpsearch.apply(model, plan, data=x)
    rtn = mpsearch.plan(model, x, budget="4.5bits", estimator_settings={"max_probes": 8}, max_evals=4,
                        rounding="rtn")
    assert rtn.provenance["rounding"] == "rtn" and rtn.provenance["rounding_from"] == "given"
    with torch.no_grad():
        ref = model(x)
        e_auto = (q(x) - ref).pow(2).mean()
        e_rtn = (mpsearch.apply(model, rtn)(x) - ref).pow(2).mean()
    assert e_auto < e_rtn  # GPTQ's plan reconstructs the outputs better at the same bits


def test_default_plan_of_a_cnn_stays_rtn_per_channel(digits):
    plan = mpsearch.plan(digits.model, digits.calibration, budget="5bits", estimator_settings={"max_probes": 8},
                         search="ilp", guard_uniform=False)
    assert plan.provenance["rounding"] == "rtn"
    assert plan.provenance["rounding_from"].startswith("auto: rtn")
    assert plan.provenance["formats"] == DEFAULT_FORMATS
    mpsearch.apply(digits.model, plan)  # no data needed


def test_a_plan_without_rounding_settings_is_applied_as_it_was_made():
    """Plans made before GPTQ_SETTINGS record none: apply rounds them with gptq_encode's own defaults."""
    model, x = _mlp(), _data()
    plan = mpsearch.plan(model, x, budget="4.5bits", estimator_settings={"max_probes": 8}, max_evals=2)
    site, fmt = next((s, f) for s, f in plan.assignments.items() if f != "bf16")
    pname = f"{site}.weight"  # a Linear site is named by its module
    w = model.get_parameter(pname)
    old = dataclasses.replace(plan, provenance={k: v for k, v in plan.provenance.items() if k != "rounding_settings"})
    legacy = Rounding("gptq", model, x).rounded(w, get_format(fmt))
    new = Rounding("gptq", model, x, **GPTQ_SETTINGS).rounded(w, get_format(fmt))
    assert torch.equal(mpsearch.apply(model, old, data=x).get_parameter(pname), legacy)
    assert torch.equal(mpsearch.apply(model, plan, data=x).get_parameter(pname), new)
    assert not torch.equal(legacy, new)


def test_sensitivity_scores_the_rounding_it_is_given(tmp_path, capsys):
    """`mpsearch.sensitivity(rounding=)` and `mpsearch sensitivity --rounding`: the damage of the weights
    as that rounding makes them; auto is GPTQ here, and GPTQ's int4 is scored below round-to-nearest's."""
    model, x = _mlp(), _data()
    kw = {"estimator": "measured", "formats": "int4_g128,int8", "cache": False}
    auto, gptq, rtn = (mpsearch.sensitivity(model, x, rounding=r, **kw) for r in ("auto", "gptq", "rtn"))
    assert auto.frame.omega.tolist() == gptq.frame.omega.tolist()
    g4, r4 = (t.frame[t.frame.format == "int4_g128"].set_index("site").omega for t in (gptq, rtn))
    assert (g4 < r4).all()
    from mpsearch.cli import main

    with pytest.raises(SystemExit) as e:
        main(["sensitivity", "--example", "tiny-decoder", "--rounding", "gptqq"])
    assert e.value.code == 2 and "invalid choice: 'gptqq'" in capsys.readouterr().err
    out = tmp_path / "s.csv"
    assert main(["sensitivity", "--example", "tiny-decoder", "--formats", "int4_g128", "--rounding", "rtn",
                 "--no-cache", "-o", str(out)]) == 0
    from mpsearch.examples import load_example

    ex = load_example("tiny-decoder")
    api = mpsearch.sensitivity(ex.model, ex.calibration, formats="int4_g128", rounding="rtn", cache=False)
    cli = pd.read_csv(out).set_index("site").omega
    assert cli.to_dict() == pytest.approx(api.frame.set_index("site").omega.to_dict(), rel=1e-6)


def test_auto_stays_rtn_where_gptq_statistics_would_not_fit(monkeypatch):
    """GPTQ holds a float64 K x K Hessian per site: past GPTQ_AUTO_MAX_BYTES `auto` is rtn, and says why."""
    import mpsearch.rounding as rounding

    model, x = _mlp(), _data()
    site_list = sites(model, x)
    assert rounding.hessian_bytes(site_list) == 3 * 128 * 128 * 8
    assert resolve_auto("auto", site_list)[0] == "gptq"
    monkeypatch.setattr(rounding, "GPTQ_AUTO_MAX_BYTES", 3 * 128 * 128 * 8 - 1)
    name, why = resolve_auto("auto", site_list)
    assert name == "rtn" and "input Hessians would take" in why and "rounding='gptq' forces it" in why
    assert resolve_auto("gptq", site_list) == ("gptq", "given")
    plan = mpsearch.plan(model, x, budget="4.5bits", search="ilp", guard_uniform=False,
                         estimator_settings={"max_probes": 8})
    assert plan.provenance["rounding"] == "rtn" and plan.provenance["rounding_from"] == why
    from mpsearch.report import totals_line  # what `mpsearch plan` prints under the totals
    assert totals_line(plan).splitlines()[-1] == f"rounding: rtn (auto: {why[len('auto: rtn ('):-1]})"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gptq_on_a_cuda_model_matches_the_cpu_and_restores_its_weights():
    """The statistics live on the model's device; GPTQ runs there and its encodings are cached on the host."""
    from mpsearch.quantize import quantized

    model, x = _mlp(), _data()
    fmt = get_format("int4_fr_g128_mse")
    cpu = Rounding("gptq", model, x, **GPTQ_SETTINGS)
    ref = {n: cpu.encoded(p, fmt).codes for n, p in model.named_parameters() if p.dim() == 2}
    gpu_model, gx = _mlp().cuda(), x.cuda()
    gpu = Rounding("gptq", gpu_model, gx, **GPTQ_SETTINGS)
    for n, p in gpu_model.named_parameters():
        if p.dim() == 2:
            codes = gpu.encoded(p, fmt).codes
            assert codes.device.type == "cpu"
            assert (codes == ref[n]).float().mean() > 0.999  # float64 Cholesky on two devices
            assert gpu.rounded(p, fmt).device == p.device
    before = {n: p.detach().clone() for n, p in gpu_model.named_parameters()}
    with gpu.active(), quantized(gpu_model, {s.name: "int4_fr_g128_mse" for s in sites(gpu_model, gx)}):
        pass
    assert all(torch.equal(p, before[n]) for n, p in gpu_model.named_parameters())
