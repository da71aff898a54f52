"""GPTQ with act-order (static groups): columns swept by decreasing diag H, every group's grid fixed
from W beforehand, on INT, OCP MX and NVFP4 grids. It equals the OBQ update rule run in that order,
stores exactly the format's layout (identity H: the format's own encoding), and lowers the layer's
reconstruction error ‖(W − Ŵ)X‖² against round-to-nearest."""

import pytest
import torch

from mpsearch.formats import get_format
from mpsearch.rounding.gptq import gptq_encode

FORMATS = ["int4_g8", "int4_fr_g8_mse", "int3", "int4_asym_g8", "mxfp4", "nvfp4"]


def reference_act_order(fmt, w: torch.Tensor, h: torch.Tensor, damp: float = 0.01) -> torch.Tensor:
    """The OBQ rule (no Cholesky, no lazy blocks) in decreasing diag H order, grids from the 16-bit W's
    contiguous groups: quantize column q, spread (w_q − Q(w_q)) / [H⁻¹]_qq · [H⁻¹]_{q,:} over the
    columns left, remove q from H⁻¹ by one elimination step."""
    w = w.clone().double()
    h = h.clone().double()
    dead = torch.diag(h) == 0
    w[:, dead] = 0
    if hasattr(fmt, "grid_bind"):
        fmt = fmt.grid_bind(w.float())
    span = w.shape[1] if fmt.granularity in ("pc", "pt") else fmt.group
    grids = [fmt.grid_params(w[:, g:g + span]) for g in range(0, w.shape[1], span)]
    order = torch.argsort(torch.diag(h), descending=True, stable=True).tolist()
    h[dead, dead] = 1
    h += damp * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    hinv = torch.linalg.inv(h)
    out = torch.zeros_like(w)
    left = list(range(w.shape[1]))
    for q in order:
        grid = grids[q // span]
        out[:, q] = fmt.grid_values(fmt.grid_levels(w[:, q].to(w.dtype), grid), grid).double()
        err = (w[:, q] - out[:, q]) / hinv[q, q]
        rest = [c for c in left if c != q]
        w[:, rest] -= err[:, None] * hinv[q, rest][None, :]
        hinv = hinv - hinv[:, q:q + 1] @ hinv[q:q + 1, :] / hinv[q, q]
        left = rest
    return out


def _layer(rows=6, k=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, k, generator=g, dtype=torch.float64)
    w[:, 3] *= 6.0  # an outlier column
    scale = torch.rand(k, generator=g, dtype=torch.float64) * 3 + 0.1  # inputs of unequal energy
    x = (torch.randn(300, k, generator=g, dtype=torch.float64) @ torch.randn(k, k, generator=g, dtype=torch.float64)
         * 0.3 + torch.randn(300, k, generator=g, dtype=torch.float64)) * scale
    x[:, 7] = 0  # a dead input
    return w, 2 * x.T @ x / x.shape[0]


@pytest.mark.parametrize("name", FORMATS)
def test_act_order_equals_the_update_rule_in_that_order(name):
    fmt = get_format(name)
    w, h = _layer(k=64)  # two MX blocks of 32, four NVFP4 blocks of 16, eight INT groups of 8
    enc = gptq_encode(fmt, w, h, block=5, dtype=torch.float64, act_order=True)
    ours = fmt.decode(enc, tuple(w.shape)).double()
    ref = reference_act_order(fmt, w, h)
    assert torch.allclose(ours, ref, rtol=0, atol=1e-6), (ours - ref).abs().max()
    assert enc.bits == fmt.storage_bits(tuple(w.shape))


@pytest.mark.parametrize("name", FORMATS)
def test_act_order_with_identity_hessian_is_the_formats_own_encoding(name):
    fmt = get_format(name)
    w = _layer(k=64)[0].float()
    got, ref = gptq_encode(fmt, w, torch.eye(64), act_order=True), fmt.encode(w)
    assert torch.equal(got.codes, ref.codes)
    for key in ref.scales:
        assert torch.equal(got.scales[key], ref.scales[key]), key


@pytest.mark.parametrize("name", FORMATS)
def test_act_order_lowers_the_layer_output_error_against_rtn(name):
    fmt = get_format(name)
    w, h = _layer(rows=32, k=128, seed=3)
    q = fmt.decode(gptq_encode(fmt, w.float(), h, act_order=True), tuple(w.shape)).double()
    rtn = fmt.quantize(w.float()).double()

    def err(v):
        d = v - w
        return float((d @ h @ d.T).trace())

    assert err(q) < 0.9 * err(rtn), (err(q), err(rtn))
