"""GPTQ: equals the paper's column-by-column update rule, ships what the plan scored, beats RTN."""

import pytest
import torch
from torch import nn

import mpsearch
from mpsearch.data import as_data
from mpsearch.formats import get_format
from mpsearch.rounding import Rounding, input_hessians
from mpsearch.rounding.gptq import gptq_encode


def reference_gptq(fmt, w: torch.Tensor, h: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """Frantar et al. 2022, the OBS/OBQ rule without the Cholesky or lazy-batch tricks: quantize column
    q, W[:, q+1:] -= (w_q - Q(w_q)) / [H^-1]_qq * [H^-1]_{q, q+1:}, then remove q from H^-1 by one step
    of Gaussian elimination (eq. 3). A group's grid comes from the current (updated) weights of its
    columns when column q is its first."""
    w = w.clone().double()
    h = h.clone().double()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    hinv = torch.linalg.inv(h)
    span = w.shape[1] if fmt.granularity in ("pc", "pt") else fmt.group
    out = torch.zeros_like(w)
    for q in range(w.shape[1]):
        if q % span == 0:
            grid = fmt.grid_params(w[:, q:q + span])
        out[:, q] = fmt.grid_values(fmt.grid_levels(w[:, q], grid), grid)
        err = (w[:, q] - out[:, q]) / hinv[q, q]
        w[:, q:] -= err[:, None] * hinv[q, q:][None, :]
        hinv = hinv - hinv[:, q:q + 1] @ hinv[q:q + 1, :] / hinv[q, q]
    return out


@pytest.mark.parametrize("name", ["int3", "int4_g8", "int4_fr_g8", "int4_asym_g8", "int2_fr_mse", "int4_pt"])
def test_gptq_equals_the_papers_update_rule(name):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 24, generator=g, dtype=torch.float64)
    x = torch.randn(200, 24, generator=g, dtype=torch.float64) @ torch.randn(24, 24, generator=g, dtype=torch.float64)
    x[:, 5] = 0  # a dead input
    h = 2 * x.T @ x / x.shape[0]
    fmt = get_format(name)
    enc = gptq_encode(fmt, w, h, block=5, dtype=torch.float64)  # lazy blocks that do not align with the groups
    ours = fmt.decode(enc, tuple(w.shape)).double()
    ref = reference_gptq(fmt, w, h)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-6), (ours - ref).abs().max()
    assert enc.bits == fmt.storage_bits(tuple(w.shape))
    # and it is a different answer from round-to-nearest that reconstructs the layer output better
    rtn = fmt.quantize(w.float()).double()
    assert not torch.equal(ours, rtn)
    assert ((ours - w) @ h @ (ours - w).T).trace() < ((rtn - w) @ h @ (rtn - w).T).trace()


def _small(digits, n=128):
    return {k: v[:n] for k, v in digits.calibration.items()}


def test_gptq_lowers_layer_output_error_on_the_digits_cnn(digits):
    m = digits.model
    r = Rounding("gptq", m, _small(digits))
    wins = 0
    hs = {p: h for p, h in r.hessians.items() if h.shape[0] <= 300}  # every site but the widest, for time
    for pname, h in hs.items():
        p = m.get_parameter(pname)
        w = p.detach().reshape(p.shape[0], -1).double()
        for name in ("int3", "int4_fr_g32"):
            fmt = get_format(name)
            g = r.rounded(p, fmt).reshape(w.shape).double() - w
            n = fmt.quantize(p.detach()).reshape(w.shape).double() - w
            e_gptq, e_rtn = (g @ h @ g.T).trace(), (n @ h @ n.T).trace()  # ‖ΔW X‖² on the calibration inputs
            assert e_gptq <= e_rtn * 1.001, (pname, name)
            wins += bool(e_gptq < 0.9 * e_rtn)
    assert wins >= len(hs)  # a 10% cut on at least half of the (site, format) pairs


def test_gptq_plan_scores_applies_and_exports_the_same_weights(digits, tmp_path):
    m = digits.model
    cal = _small(digits)
    plan = mpsearch.plan(m, cal, budget="4.2bits", formats="int3,int4_fr_g32,bf16", rounding="gptq",
                         estimator_settings={"max_probes": 8})
    assert plan.provenance["rounding"] == "gptq"
    with pytest.raises(mpsearch.errors.PlanError, match="needs the calibration data"):
        mpsearch.apply(m, plan)
    q = mpsearch.apply(m, plan, data=cal)
    path = tmp_path / "g.safetensors"
    r = mpsearch.export(m, plan, path, data=cal)
    assert r.site_bytes == r.predicted_site_bytes
    fresh = type(m)()
    fresh.load_state_dict(m.state_dict())
    loaded = mpsearch.load_packed(path, fresh)
    rtn = mpsearch.apply(m, mpsearch.Plan.from_assignments(m, plan.assignments, data=cal))
    differs = 0
    for site in plan.assignments:
        w = q.get_parameter(f"{site}.weight")
        assert torch.equal(loaded.get_parameter(f"{site}.weight"), w), site
        differs += not torch.equal(w, rtn.get_parameter(f"{site}.weight"))
    assert differs == sum(f != "bf16" for f in plan.assignments.values())  # every quantized site is GPTQ's
    # the guard measured the GPTQ plan: its recorded loss is the applied model's
    from mpsearch.objectives import measure

    assert plan.measured["plan"]["cross_entropy"] == pytest.approx(
        measure(q, as_data(cal), ["cross_entropy"])["cross_entropy"], rel=1e-6)


def test_gptq_layer_matches_a_linear_module():
    torch.manual_seed(0)
    lin = nn.Linear(16, 4)
    x = torch.randn(64, 16)
    h = input_hessians(lin, x)
    assert torch.allclose(h["weight"], 2 * x.double().T @ x.double() / 64)
