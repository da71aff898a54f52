"""CUDA runs the same arithmetic: every format quantizes and encodes bit-identically on CPU and GPU.
(Skipped without a GPU; the lead runs it on the GPU machine.)"""

import pytest
import torch

from mpsearch.formats import E2M1, E2M3, E3M2, E4M3, E5M2, format_names, get_format

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
EXTRA = ["int4_asym_g64_mse", "int8_asym_p999", "int3_octav", "fp8_e5m2_g32_mse"]


@cuda
@pytest.mark.parametrize("name", format_names() + EXTRA)
def test_cuda_matches_cpu_bit_for_bit(name):
    fmt = get_format(name)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 200, generator=g) * torch.rand(96, 200, generator=g).pow(4) * 5
    assert torch.equal(fmt.quantize(x.cuda()).cpu(), fmt.quantize(x))
    a, b = fmt.encode(x), fmt.encode(x.cuda())
    assert torch.equal(a.codes, b.codes.cpu())
    assert all(torch.equal(t, b.scales[k].cpu()) for k, t in a.scales.items())
    assert torch.equal(fmt.decode(b, x.shape).cpu(), fmt.quantize(x))


@cuda
@pytest.mark.parametrize("elem", [E4M3, E5M2, E3M2, E2M3, E2M1], ids=lambda e: e.name)
def test_cuda_element_rounding_matches_cpu(elem):
    pos = elem.decode(torch.arange(2 ** (elem.bits - 1)))
    pos = pos[torch.isfinite(pos)]
    mids = (pos[1:] + pos[:-1]) / 2
    special = torch.tensor([1e30, float("inf"), float("nan")])
    x = torch.cat([pos, mids, torch.randn(100000) * elem.max / 3, special])
    x = torch.cat([x, -x])
    for path in ("round", "_round_arith"):
        got = getattr(elem, path)(x.cuda()).cpu()
        ref = getattr(elem, path)(x)
        assert torch.equal(torch.isnan(got), torch.isnan(ref))
        assert torch.equal(got[~torch.isnan(ref)], ref[~torch.isnan(ref)])
