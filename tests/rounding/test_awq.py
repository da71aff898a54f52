"""AWQ: equals the paper's scale-search rule, never loses to RTN on the calibration inputs, ships what
the plan scored (apply and export give identical weights)."""

import copy

import pytest
import torch
from torch import nn

import mpsearch
from mpsearch.formats import get_format
from mpsearch.rounding import Rounding
from mpsearch.rounding.awq import KEY, awq_encode, decode


def reference_awq(fmt, w: torch.Tensor, x: torch.Tensor, grid: int = 20) -> torch.Tensor:
    """Lin et al. 2024 §3.2 (AutoAWQ's search): s = mean|x|^α normalized by √(max·min), α on a grid
    of 20, the α whose Q(W·s)/s gives the least ‖ΔW Xᵀ‖² on the calibration rows (s stored in FP16)."""
    xabs = x.abs().mean(0).clamp(min=1e-4)
    best = None
    for i in range(grid):
        s = xabs.pow(i / grid)
        s = (s / (s.max() * s.min()).sqrt()).half().float()
        wq = fmt.quantize(w * s) / s
        err = float(((wq - w) @ x.T).pow(2).sum())
        if best is None or err < best[0]:
            best = (err, wq)
    return best[1]


def _layer(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 32, generator=g)
    x = torch.randn(256, 32, generator=g)
    x[:, [3, 17, 29]] *= 25  # outlier input channels, the case AWQ is for
    return w, x


def _err(wq, w, x) -> float:
    return float(((wq - w) @ x.T).pow(2).sum())


@pytest.mark.parametrize("name", ["int3", "int4_g8", "int4_fr_g16", "int4_asym_g8", "mxfp4", "nvfp4"])
def test_awq_equals_the_papers_rule_and_beats_rtn(name):
    w, x = _layer()
    fmt = get_format(name)
    lin = nn.Linear(32, 8, bias=False)
    lin.weight.data.copy_(w)
    r = Rounding("awq", lin, x)
    ours = r.rounded(lin.weight, fmt)
    ref = reference_awq(fmt, w, x)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-6), (ours - ref).abs().max()
    rtn = fmt.quantize(w)
    assert _err(ours, w, x) < 0.9 * _err(rtn, w, x)  # outliers: a real cut, not a tie at α = 0
    enc = r.encoded(lin.weight, fmt)
    assert enc.scales[KEY].dtype == torch.float16 and enc.scales[KEY].shape == (32,)
    assert enc.bits == fmt.storage_bits((8, 32)) + 16 * 32  # the input scale is stored, and counted


def test_awq_never_worse_than_rtn_without_outliers():
    g = torch.Generator().manual_seed(1)
    w, x = torch.randn(6, 16, generator=g), torch.randn(64, 16, generator=g)
    h = 2 * x.double().T @ x.double() / x.shape[0]
    for name in ("int2", "int4_g8", "nvfp4"):
        fmt = get_format(name)
        ours = decode(fmt, awq_encode(fmt, w, h, x.abs().mean(0)), (6, 16))
        assert _err(ours, w, x) <= _err(fmt.quantize(w), w, x) * (1 + 1e-9)  # α = 0 is RTN


def test_awq_gptq_beats_awq_and_gptq_on_int():
    w, x = _layer(2)
    lin = nn.Linear(32, 8, bias=False)
    lin.weight.data.copy_(w)
    fmt = get_format("int3_g16")
    errs = {n: _err(Rounding(n, lin, x).rounded(lin.weight, fmt), w, x) for n in ("awq", "gptq", "awq+gptq")}
    assert errs["awq+gptq"] <= min(errs["awq"], errs["gptq"]) * 1.001, errs


def _mlp():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x = torch.randn(128, 32)
    x[:, [2, 11]] *= 20
    return m, (x, torch.randint(0, 10, (128,)))


def test_awq_plan_applies_and_exports_the_same_weights(tmp_path):
    m, cal = _mlp()
    plan = mpsearch.plan(m, cal, budget="4.6bits", formats="int3_g32,int4_g32,int8,bf16", rounding="awq",
                         estimator="output", cache=False)
    assert plan.provenance["rounding"] == "awq"
    q = mpsearch.apply(m, plan, data=cal)
    r = mpsearch.export(m, plan, tmp_path / "a.safetensors", data=cal)
    loaded = mpsearch.load_packed(tmp_path / "a.safetensors", copy.deepcopy(m))
    rtn = mpsearch.apply(m, mpsearch.Plan.from_assignments(m, plan.assignments, data=cal))
    scaled = 0
    for site in plan.assignments:
        w = q.get_parameter(f"{site}.weight")
        assert torch.equal(loaded.get_parameter(f"{site}.weight"), w), site
        if not torch.equal(w, rtn.get_parameter(f"{site}.weight")):  # α > 0 won: s is stored
            scaled += w.shape[1]
    assert scaled and r.site_bytes == r.predicted_site_bytes + 2 * scaled  # + the FP16 input scales
