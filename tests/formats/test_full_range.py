"""Full-range symmetric INT (`_fr`): all 2^b codes, the largest |w| on code -2^(b-1), signed FP16 scale."""

import pytest
import torch

import mpsearch
from mpsearch.formats import get_format
from mpsearch.formats._scaling import MSE_GRID

X = torch.tensor([[0.7, -0.35, 0.1],   # max wins: s = -fp16up(0.7/8) < 0, 0.7 -> code -8
                  [7.0, 2.5, -3.5],    # s = -0.875 exactly
                  [-0.8, 0.3, 0.5],    # |min| wins: s = fp16up(0.8/8) > 0
                  [-2.0, 2.0, 1.0]])   # tie |min| = max: s > 0, so +2 saturates at code +7


def test_int4_full_range_codes_scales_and_values_hand_worked():
    fmt = get_format("int4_fr")
    enc = fmt.encode(X)
    s0 = -(1434 / 1024) * 2.0**-4  # 0.0875 = 1.4·2^-4 -> mantissa ceil(1.4·1024) = 1434
    s2 = 0.10003662109375           # next FP16 above 0.1
    assert enc.scales["scale"].dtype == torch.float16
    assert enc.scales["scale"].float().tolist() == [s0, -0.875, s2, 0.25]
    signed = torch.where(enc.codes >= 8, enc.codes - 16, enc.codes)
    # row 0: 0.7/s0 = -7.998 -> -8, -0.35/s0 = 3.999 -> 4, 0.1/s0 = -1.14 -> -1
    # row 1: -8, 2.5/-0.875 = -2.857 -> -3, -3.5/-0.875 = 4; row 2: -7.997 -> -8, 2.999 -> 3, 4.998 -> 5
    # row 3: -8, 8 clamps to 7, 4
    assert signed.tolist() == [[-8, 4, -1], [-8, -3, 4], [-8, 3, 5], [-8, 7, 4]]
    assert enc.codes.tolist()[0] == [8, 4, 15]  # 4-bit two's complement on disk
    q = fmt.quantize(X)
    assert q.tolist() == [[-8 * s0, 4 * s0, -s0], [7.0, 2.625, -3.5], [-8 * s2, 3 * s2, 5 * s2], [-2.0, 1.75, 1.0]]
    assert torch.equal(fmt.decode(enc, X.shape), q)
    # same bits as restricted symmetric: b per element + one FP16 scale per block
    assert fmt.storage_bits((4, 3)) == get_format("int4").storage_bits((4, 3)) == 4 * 3 * 4 + 4 * 16


def test_full_range_uses_all_levels_where_restricted_uses_2b_minus_1():
    x = torch.linspace(-1, 1, 4001).reshape(1, -1)
    for b in (2, 3, 4, 8):
        fr = get_format(f"int{b}_fr").quantize(x).unique().numel()
        rs = get_format(f"int{b}").quantize(x).unique().numel()
        assert (fr, rs) == (2**b, 2**b - 1)
    # INT2 full range: codes {-2, -1, 0, 1}; max|x| = 1 (tie, min wins) -> s = 0.5
    assert get_format("int2_fr").quantize(torch.tensor([[-1.0, -0.3, 0.3, 1.0]])).tolist() == [[-1.0, -0.5, 0.5, 0.5]]


def test_full_range_groups_and_names():
    x = torch.tensor([[1.0, -2.0, 3.0, -4.0, 0.5, 0.25, 0.0, -0.125]])
    enc = get_format("int4_fr_g4").encode(x)
    assert enc.scales["scale"].float().tolist() == [0.5, -0.0625]  # -4 -> s = 4/8; 0.5 -> s = -0.5/8
    assert get_format("int4_fr_g4").quantize(x).tolist() == [[1.0, -2.0, 3.0, -4.0, 0.5, 0.25, 0.0, -0.125]]
    assert get_format("INT4_FR_G128_MSE").name == "int4_fr_g128_mse"
    assert get_format("int4_fr_g128").layout == get_format("int4_g128").layout
    with pytest.raises(mpsearch.errors.FormatError):
        get_format("int4_fr_asym")
    with pytest.raises(mpsearch.errors.FormatError, match="for weights"):
        mpsearch.formats.get_choice("int4:int8_fr")


def test_full_range_mse_clip_is_the_best_grid_point_and_beats_restricted():
    torch.manual_seed(0)
    x = torch.distributions.Laplace(0.0, 1.0).sample((8, 256))
    fmt = get_format("int4_fr_g128_mse")
    err = (fmt.quantize(x) - x).pow(2).reshape(8, 2, 128).sum(-1)
    for alpha in MSE_GRID:  # brute force over the clip grid, block by block, with the same signed scale rule
        blocks = x.reshape(8, 2, 128)
        lo, hi = blocks.amin(-1, keepdim=True), blocks.amax(-1, keepdim=True)
        c = torch.maximum(-lo, hi) * alpha
        s = (c / 8).half()
        s = torch.where(s.float() < c / 8, (s.view(torch.int16) + 1).view(torch.float16), s).float()
        s = s * torch.where(-lo >= hi, 1.0, -1.0)
        q = (blocks / s).round().clamp(-8, 7) * s
        assert bool((err <= (q - blocks).pow(2).sum(-1) + 1e-6).all())

    def mse(name):
        return float((get_format(name).quantize(x) - x).pow(2).mean())

    assert mse("int4_fr_g128") < mse("int4_g128")
    assert mse("int4_fr_g128_mse") <= mse("int4_fr_g128")
