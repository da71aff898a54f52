"""Weight layouts: a MoE experts weight (E, out, in) quantizes as E separate (out, in) Linear weights (one
scale per expert per output channel, groups along `in`), a Conv1d weight (out, in, k) as it always has."""

import pytest
import torch
from torch import nn

from mpsearch.formats import EXPERTS, ROWS, get_format, layout_for
from mpsearch.model import sites

E, OUT, IN = 3, 8, 256


def _experts(seed: int = 0) -> torch.Tensor:
    w = torch.randn(E, OUT, IN, generator=torch.Generator().manual_seed(seed))
    w[:, 0, 0] = 4 * w.abs().amax()  # every expert has the same amax: NVFP4's one tensor scale is each expert's
    return w


@pytest.mark.parametrize("name", ["int4", "int4_g32", "int4_g128", "int4_asym_g64", "fp8_e4m3", "mxfp4", "nvfp4"])
def test_experts_quantize_as_each_expert_linear_weight(name):
    fmt, w = get_format(name), _experts()
    per_expert = torch.stack([fmt.quantize(w[e]) for e in range(E)])
    q = EXPERTS.quantize(fmt, w)
    assert torch.equal(q, per_expert)
    enc = EXPERTS.encode(fmt, w)
    assert enc.codes.shape == (E * OUT, IN)
    assert torch.equal(EXPERTS.decode(fmt, enc, tuple(w.shape)), q)
    bits = EXPERTS.storage_bits(fmt, tuple(w.shape))
    assert enc.bits == bits
    linear = fmt.storage_bits((OUT, IN))
    assert bits == E * linear - (E - 1) * 32 * (name == "nvfp4")  # NVFP4: one FP32 tensor scale for the weight


def test_experts_per_channel_scales_count_each_expert_row():
    w = _experts(1)
    assert EXPERTS.storage_bits(get_format("int2"), tuple(w.shape)) / w.numel() == 2 + 16 / IN
    assert ROWS.storage_bits(get_format("int2"), tuple(w.shape)) / w.numel() == 2 + 16 / (OUT * IN)  # the old bug
    pt = get_format("int4_pt")  # per tensor: still one scale for the whole weight
    assert torch.equal(EXPERTS.quantize(pt, w), pt.quantize(w))
    assert EXPERTS.storage_bits(pt, tuple(w.shape)) == w.numel() * 4 + 16


@pytest.mark.parametrize("name", ["int4", "int4_g8", "mxfp4", "nvfp4"])
def test_conv1d_weight_keeps_the_rows_layout(name):
    """(out, in, k) is 3-D like experts, but reduces over in·k: rows of in·k, groups across the kernel taps."""
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv1d(4, 8, 3))
    (site,) = sites(conv)
    assert site.kind == "conv1d" and site.layout == ROWS == layout_for("conv1d")
    fmt, w = get_format(name), conv[0].weight.detach()
    assert torch.equal(site.layout.quantize(fmt, w), fmt.quantize(w))
    assert torch.equal(fmt.quantize(w), fmt.quantize(w.reshape(8, 12)).reshape(w.shape))
    assert site.layout.storage_bits(fmt, tuple(w.shape)) == fmt.storage_bits((8, 12))
    if name == "int4":  # one scale per output channel
        assert fmt.storage_bits(tuple(w.shape)) == w.numel() * 4 + 8 * 16
