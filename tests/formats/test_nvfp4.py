"""NVFP4 blocks worked by hand: g = amax/(6*448), block scale s = E4M3(amax_block/6/g), P = E2M1(x/(s*g))."""

import torch

from mpsearch.formats import get_format

F = get_format("nvfp4")


def tensor_with(blocks: list[list[float]]) -> torch.Tensor:
    x = torch.zeros(1, 16 * len(blocks))
    for i, vals in enumerate(blocks):
        x[0, 16 * i : 16 * i + len(vals)] = torch.tensor(vals)
    return x


def test_two_level_scales_and_clamping_after_scale_rounding():
    # tensor amax 2688 -> g = 2688 / 2688 = 1
    # block A: amax 2688 -> s = E4M3(448) = 448; 2688/448 = 6; 1000/448 = 2.23 -> 2 -> 896
    # block B: amax 10 -> 10/6 = 1.667 -> E4M3 (step 1/8 in [1, 2)) -> 1.625;
    #   10/1.625 = 6.15 > 6 -> clamped to 6 -> 9.75;  3/1.625 = 1.846 -> 2 -> 3.25;
    #   -0.4/1.625 = -0.246 -> -0 (below 0.25, half the smallest subnormal)
    x = tensor_with([[2688.0, 1000.0], [10.0, 3.0, -0.4]])
    enc = F.encode(x)
    assert enc.scales["tensor_scale"].tolist() == [1.0]
    assert enc.scales["scale"].tolist() == [0x7E, 0x3D]  # E4M3 448 = 0.1111.110, 1.625 = 0.0111.101
    q = F.quantize(x)
    assert q[0, :2].tolist() == [2688.0, 896.0]
    assert q[0, 16:19].tolist() == [9.75, 3.25, -0.0]


def test_zero_block_scale_underflow_and_zero_tensor():
    # g = 6000/2688; block B amax 1e-6: 1e-6/6/g = 7.5e-8 < E4M3's smallest subnormal 2^-9 -> scale 0 -> zeros
    x = tensor_with([[6000.0, -5.0], [1e-6, -1e-6], [0.0]])
    q = F.quantize(x)
    assert q[0, 16:].abs().sum() == 0 and F.encode(x).scales["scale"][1:].tolist() == [0, 0]
    assert q[0, 0] == 6000.0
    z = torch.zeros(3, 32)
    assert torch.equal(F.quantize(z), z) and F.encode(z).scales["tensor_scale"].tolist() == [1.0]


def test_storage_is_4_5_bits_plus_32_per_tensor():
    assert F.storage_bits((16, 32)) == 512 * 4 + 32 * 8 + 32
    assert F.encode(torch.randn(16, 32)).bits == 512 * 4 + 32 * 8 + 32
    assert F.storage_bits((4, 20)) == 80 * 4 + 4 * 2 * 8 + 32  # K = 20: a full and a partial block per row
