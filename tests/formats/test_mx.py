"""OCP MX v1.0 blocks worked by hand from the spec's rules (§6.3): shared_exp = floor(log2(amax)) - emax_elem,
X = 2^shared_exp, P_i = element(V_i / X) with saturation, E8M0 scale code = shared_exp + 127."""

import math

import pytest
import torch

from mpsearch.formats import get_format


def block(*vals, k=32):
    """One 32-element block (zero-padded), as a 1 x 32 weight row."""
    x = torch.zeros(1, k)
    x[0, : len(vals)] = torch.tensor(vals)
    return x


def test_mxfp4_scale_choice_and_rne():
    # amax 12: floor(log2 12) = 3, emax(E2M1) = 2 -> shared_exp 1, X = 2, E8M0 code 128
    x = block(0.3, -1.7, 5.0, 12.0, 0.5, 7.0)
    f = get_format("mxfp4")
    enc = f.encode(x)
    assert enc.scales["scale"].tolist() == [128]
    # V/X = .15 -> 0; -.85 -> -1 (nearer than -.5); 2.5 -> tie 2|3 -> 2 (even mantissa); 6 -> 6;
    # .25 -> tie 0|.5 -> 0 (even); 3.5 -> tie 3|4 -> 4 (even)
    assert f.quantize(x)[0, :6].tolist() == [0.0, -2.0, 4.0, 12.0, 0.0, 8.0]
    # element codes S.EE.M: 0 -> 0000, -1 -> 1010, 2 -> 0100, 6 -> 0111, 4 -> 0110
    assert enc.codes[0, :6].tolist() == [0b0000, 0b1010, 0b0100, 0b0111, 0b0000, 0b0110]


def test_mxfp4_elements_beyond_the_element_max_are_clamped():
    # amax 7.9: floor(log2) = 2 -> shared_exp 0, X = 1; 7.9 / 1 exceeds E2M1's max 6 -> 6, not 8
    x = block(7.9, -7.0, 6.5, 1.25)
    assert get_format("mxfp4").quantize(x)[0, :4].tolist() == [6.0, -6.0, 6.0, 1.0]
    assert get_format("mxfp4").encode(x).scales["scale"].tolist() == [127]


def test_mxfp8_clamps_to_448():
    # amax 1000: floor(log2) = 9, emax(E4M3) = 8 -> X = 2; 1000/2 = 500 > 448 -> 448 -> 896
    x = block(1000.0, 300.0, -0.01)
    q = get_format("mxfp8_e4m3").quantize(x)
    assert q[0, 0] == 896.0 and q[0, 1] == 288.0  # 150 -> 144 (E4M3 step 16 in [128, 256)), times 2
    assert q[0, 2] == -0.01171875  # -0.005 is subnormal in E4M3: 2.56 steps of 2^-9 -> 3 steps, times 2
    # E5M2 (emax 15): amax 1000 -> shared_exp 9 - 15 = -6, X = 2^-6: 1000 * 64 = 64000 > 57344 -> 57344 -> 896
    assert get_format("mxfp8_e5m2").quantize(x)[0, 0] == 896.0


def test_floor_log2_is_exact_at_powers_of_two_and_just_below():
    below = torch.nextafter(torch.tensor(8.0), torch.tensor(0.0)).item()
    assert get_format("mxfp4").encode(block(8.0)).scales["scale"].tolist() == [128]   # 3 - 2 = 1
    assert get_format("mxfp4").encode(block(below)).scales["scale"].tolist() == [127]  # 2 - 2 = 0
    assert get_format("mxfp4").quantize(block(below))[0, 0] == 6.0  # 7.9999995 / 1 clamps to 6


def test_zero_block_and_blocks_along_the_reduction_dimension():
    x = torch.zeros(2, 64)
    x[0, 40] = 3.0    # row 0, second block
    x[1, 0] = 0.25    # row 1, first block
    f = get_format("mxfp6_e2m3")
    enc = f.encode(x)
    # scales row-major over (row, block): zero blocks store code 0 (2^-127);
    # 3.0 -> floor(log2) 1 - emax 2 = -1; 0.25 -> -2 - 2 = -4
    assert enc.scales["scale"].tolist() == [0, 126, 123, 0]
    q = f.quantize(x)
    assert q[0, 40] == 3.0 and q[1, 0] == 0.25 and int((q != 0).sum()) == 2


def test_underflow_nan_and_mxint8():
    tiny = block(2.0**-140, 2.0**-141)
    enc = get_format("mxfp4").encode(tiny)
    assert enc.scales["scale"].tolist() == [0]  # shared_exp -142 clamps to -127
    assert get_format("mxfp4").quantize(tiny).abs().sum() == 0  # 2^-140 / 2^-127 = 2^-13 rounds to 0
    nan = get_format("mxfp8_e4m3").quantize(block(1.0, math.nan))
    assert torch.isnan(nan).all()
    assert get_format("mxfp8_e4m3").encode(block(math.inf)).scales["scale"].tolist() == [255]
    # MXINT8: emax 0, amax 1.99 -> X = 1; 1.99 * 64 = 127.36 -> 127; -0.3 * 64 = -19.2 -> -19
    q = get_format("mxint8").quantize(block(1.99, -0.3, 1.0))
    assert q[0, :3].tolist() == [127 / 64, -19 / 64, 1.0]
    # amax 3 -> X = 2: 3 / 2 = 1.5 -> 96/64; 0.01 / 2 * 64 = 0.32 -> 0
    assert get_format("mxint8").quantize(block(3.0, 0.01))[0, :2].tolist() == [3.0, 0.0]


@pytest.mark.parametrize("name,bits", [("mxfp8_e4m3", 8), ("mxfp6_e3m2", 6), ("mxfp4", 4), ("mxint8", 8)])
def test_conv_weight_blocks_run_over_in_times_kh_times_kw(name, bits):
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0))  # K = 72: blocks of 32, 32, 8
    f = get_format(name)
    assert f.encode(w).scales["scale"].numel() == 16 * 3
    assert f.storage_bits(tuple(w.shape)) == w.numel() * bits + 16 * 3 * 8
    # each block is quantized alone: changing block 3 of row 0 leaves blocks 1-2 untouched
    w2 = w.clone().reshape(16, -1)
    w2[0, 70] = 1000.0
    q1, q2 = f.quantize(w).reshape(16, -1), f.quantize(w2.reshape(w.shape)).reshape(16, -1)
    assert torch.equal(q1[:, :64], q2[:, :64]) and not torch.equal(q1[0, 64:], q2[0, 64:])
