"""Integer and scaled-minifloat formats: hand-worked scales, RNE, zero-points, groups and clipping."""

import math

import pytest
import torch

from mpsearch.errors import FormatError
from mpsearch.formats import get_format
from mpsearch.formats._scaling import MSE_GRID, fp16_scale


def test_fp16_scale_is_the_smallest_fp16_at_or_above_clip_over_qmax():
    s = fp16_scale(torch.tensor([0.7, 7.0, 0.0, 1e-9, 1e9]), 7)
    # 0.1 is not an FP16 value: 0.0999755859375 < 0.1 < 0.10003662109375 (next FP16)
    assert s.tolist() == [0.10003662109375, 1.0, 1.0, 2.0**-24, 65504.0]


def test_symmetric_int4_per_channel_hand_worked():
    x = torch.tensor([[0.7, -0.35, 0.1], [7.0, 2.5, -3.5]])
    enc = get_format("int4").encode(x)
    assert enc.scales["scale"].float().tolist() == [0.10003662109375, 1.0]
    # row 0: 6.9975 -> 7, -3.4987 -> -3, 0.9996 -> 1; row 1 (s = 1): ties 2.5 -> 2, -3.5 -> -4 (to even)
    codes = torch.where(enc.codes >= 8, enc.codes - 16, enc.codes)  # 4-bit two's complement
    assert codes.tolist() == [[7, -3, 1], [7, 2, -4]]
    q = get_format("int4").quantize(x)
    assert q[1].tolist() == [7.0, 2.0, -4.0]
    assert q[0].tolist() == pytest.approx([0.70025634765625, -0.30010986328125, 0.10003662109375], abs=0)


def test_asymmetric_zero_point_hand_worked():
    x = torch.tensor([[-1.0, 0.0, 2.0]])
    enc = get_format("int4_asym").encode(x)
    s = 0.2000732421875  # ceil to FP16 of 3/15
    assert enc.scales["scale"].float().tolist() == [s]
    assert enc.zeros.tolist() == [5]  # round(1 / s) = round(4.998)
    assert enc.codes.tolist() == [[0, 5, 15]]
    assert get_format("int4_asym").quantize(x)[0].tolist() == [-5 * s, 0.0, 10 * s]
    assert get_format("int4_asym").storage_bits((1, 3)) == 3 * 4 + 16 + 4


def test_groups_run_along_the_input_dimension_and_pad_the_last_one():
    x = torch.tensor([[1.0, 2.0, 3.0, 7.0, 0.5, 0.25]])  # int4_g4: groups [1 2 3 7], [.5 .25 (pad 0 0)]
    enc = get_format("int4_g4").encode(x)
    assert enc.scales["scale"].float().tolist() == [1.0, fp16_scale(torch.tensor(0.5), 7).item()]
    assert get_format("int4_g4").quantize(x)[0, :4].tolist() == [1.0, 2.0, 3.0, 7.0]
    assert get_format("int4_g4").storage_bits((1, 6)) == 6 * 4 + 2 * 16
    # per-tensor: one scale for everything
    assert get_format("int8_pt").encode(torch.randn(3, 5)).scales["scale"].numel() == 1


def _mse(name, x):
    return float((get_format(name).quantize(x) - x).pow(2).mean())


def test_mse_clipping_never_loses_to_absmax_and_wins_on_heavy_tails():
    g = torch.Generator().manual_seed(0)
    laplace = torch.distributions.Laplace(0.0, 1.0)
    torch.manual_seed(0)
    x = laplace.sample((64, 512))
    for base in ("int4", "int3_g128", "int4_asym_g64", "fp4_e2m1_g32", "fp6_e2m3"):
        assert _mse(base + "_mse", x) <= _mse(base, x)
    assert _mse("int4_mse", x) < 0.8 * _mse("int4", x)
    gauss = torch.randn(8, 4096, generator=g)
    assert _mse("int3_mse", gauss) < _mse("int3", gauss)
    assert len(MSE_GRID) == 60 and MSE_GRID[0] == 1.0


def test_mse_search_picks_the_grid_minimum():
    # brute force over the same grid for one row: the chosen scale must give the smallest error
    torch.manual_seed(2)
    x = torch.distributions.Laplace(0.0, 1.0).sample((1, 256))
    amax = x.abs().max()
    errs = []
    for a in MSE_GRID:
        s = fp16_scale(amax * a, 7)
        errs.append(float(((x / s).round().clamp(-7, 7) * s - x).pow(2).sum()))
    best = fp16_scale(amax * MSE_GRID[min(range(len(errs)), key=errs.__getitem__)], 7)
    assert get_format("int4_mse").encode(x).scales["scale"].float().item() == best.item()


def test_octav_is_the_fixed_point_and_near_the_model_optimum():
    torch.manual_seed(1)
    x = torch.distributions.Laplace(0.0, 1.0).sample((1, 20000))
    s = get_format("int4_octav").encode(x).scales["scale"].float().item()
    a = x.abs()[0].double()

    def j(c):  # OCTAV's MSE model: quantization noise inside the clip + clipping error outside
        inside = (a <= c).double()
        return (4.0**-4 / 3) * c * c * inside.mean() + ((a - c).clamp(min=0) ** 2).mean()

    cs = torch.linspace(0.5, float(a.max()), 4000, dtype=torch.float64)
    c_star = float(cs[torch.stack([j(c) for c in cs]).argmin()])
    c = s * 7
    assert c == pytest.approx(c_star, rel=0.02)  # fp16 ceil of c/7 moves c by < 0.1%
    over = (a > c).double()
    fixed = float((a * over).mean() / ((4.0**-4 / 3) * (1 - over).mean() + over.mean()))
    assert fixed == pytest.approx(c, rel=2e-3)
    assert _mse("int4_octav", x) < _mse("int4", x)


def test_percentile_clip():
    x = torch.arange(1, 1001, dtype=torch.float32).reshape(1, -1)  # |x| 1..1000; 0.99 quantile -> 990
    s = fp16_scale(torch.tensor(990.0), 127)
    assert get_format("int8_p99").encode(x).scales["scale"].float().item() == s
    assert get_format("int8_p99").quantize(x)[0, -1] == 127 * s


def test_scaled_minifloat_hand_worked():
    x = torch.tensor([[448.0, 100.0, -0.3, 1e-4]])
    f = get_format("fp8_e4m3")
    assert f.encode(x).scales["scale"].float().tolist() == [1.0]
    # 100 is the midpoint of 96 and 104 (step 8 in [64, 128)): the even mantissa wins, 96 = 1.100b * 2^6
    assert f.quantize(x)[0].tolist() == [448.0, 96.0, -0.3125, 0.0]
    g = get_format("fp4_e2m1_g2")
    # groups [3, -1.1] (s = ceil16(3/6) = 0.5: 6, -2.2 -> -2 -> -1.0) and [0.05, 0.0] (s = ceil16(0.05/6))
    q = g.quantize(torch.tensor([[3.0, -1.1, 0.05, 0.0]]))
    assert q[0, :2].tolist() == [3.0, -1.0] and q[0, 2].item() == pytest.approx(0.05, rel=1e-3)


@pytest.mark.parametrize("suffix, pct", [("_p99.9", 99.9), ("_p999", 99.9), ("_p9999", 99.99), ("_p50", 50.0),
                                         ("_p5", 5.0), ("_p100", 100.0), ("_p99", 99.0), ("_p12.5", 12.5)])
def test_percentile_suffix_is_the_percentile(suffix, pct):
    """`_p{P}` clips at the P-th percentile of |x| (1..1000 here, so the clip is 10·P), not at 0.P."""
    x = torch.arange(1, 1001, dtype=torch.float32).reshape(1, -1)
    clip = math.ceil(pct * 10 - 1e-9)
    scale = get_format("int8" + suffix).encode(x).scales["scale"].float().item()
    assert scale == fp16_scale(torch.tensor(float(clip)), 127)


@pytest.mark.parametrize("name", ["int8_p0", "int8_p1000", "int8_p100.5", "fp8_e4m3_p250"])
def test_percentile_out_of_range_is_refused_with_the_new_spelling(name):
    with pytest.raises(FormatError, match=r"percentile must be in \(0, 100\]; write e\.g\. _p"):
        get_format(name)
