"""The checks every registered format must pass (one suite, so a new format gets them for free),
and hypothesis properties: idempotent, nearest grid point (≤ half a step) inside the range, monotone."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mpsearch.formats import E2M1, E4M3, format_names, get_format
from mpsearch.formats._packing import pack_bits, packed_size, unpack_bits

EXTRA = ["int4_asym_g64_mse", "int8_asym_p999", "fp6_e3m2_pt", "int2_g16", "int5_asym_pt", "fp8_e5m2_g32_mse"]
ALL = format_names() + EXTRA
SHAPES = [(64, 300), (8, 3, 3, 3), (10,), (5, 7), (1, 1), (2, 33)]


@pytest.mark.parametrize("name", ALL)
def test_decode_of_encode_is_quantize_and_bits_are_exact(name):
    fmt = get_format(name)
    g = torch.Generator().manual_seed(1)
    for shape in SHAPES:
        x = torch.randn(shape, generator=g) * torch.rand(shape, generator=g).pow(3) * 3
        q = fmt.quantize(x)
        enc = fmt.encode(x)
        assert q.shape == x.shape and q.dtype == x.dtype
        assert torch.equal(fmt.decode(enc, x.shape), q), shape
        assert enc.bits == fmt.storage_bits(tuple(shape)), shape
        assert bool(((enc.codes >= 0) & (enc.codes < 2**enc.code_bits)).all())
        stream = enc.codes.reshape(-1)
        packed = pack_bits(stream, enc.code_bits)
        assert torch.equal(unpack_bits(packed, enc.code_bits, stream.numel()), stream)


@pytest.mark.parametrize("name", ALL)
def test_zeros_half_precision_inputs_and_scale_invariance(name):
    fmt = get_format(name)
    assert torch.equal(fmt.quantize(torch.zeros(4, 64)), torch.zeros(4, 64))
    x = torch.randn(4, 64, generator=torch.Generator().manual_seed(2))
    for dt in (torch.float16, torch.bfloat16):
        row = x[:1].to(dt)
        q = fmt.quantize(row)
        assert q.dtype == dt
        if fmt.family == "gguf":  # llama.cpp's block formats: gguf-py's own quantizer is the reference there
            continue  # (tests/exporters/test_gguf.py compares bit for bit)
        # independent reference: a nearest point (saturating) of the grid the stored scales define, in dt
        for qi, near in zip(q[0].float().tolist(), _nearest_on_grid(fmt, row.float()), strict=True):
            assert qi in {float(torch.tensor(v).to(dt)) for v in near}, (dt, qi, near)
    if fmt.family in ("mx",):  # power-of-two scales: scaling the input by 2^k scales the output exactly
        assert torch.equal(fmt.quantize(x * 2.0**-20), fmt.quantize(x) * 2.0**-20)


def test_packing_layouts():
    assert pack_bits(torch.tensor([1, 2, 3]), 4).tolist() == [0x21, 0x03]  # first code in the low nibble
    # 6-bit: 1 | 2<<6 | 3<<12 | 4<<18 = 0x103081 -> bytes 81 30 10 (little-endian)
    assert pack_bits(torch.tensor([1, 2, 3, 4]), 6).tolist() == [0x81, 0x30, 0x10]
    g = torch.Generator().manual_seed(3)
    for bits in [*range(1, 9), 16, 24]:
        for n in (0, 1, 7, 33, 1000):
            c = torch.randint(0, 2**bits, (n,), generator=g)
            packed = pack_bits(c, bits)
            assert packed.dtype == torch.uint8
            assert packed.numel() == packed_size(n, bits) == math.ceil(n * bits / 8)
            assert torch.equal(unpack_bits(packed, bits, n), c)


# -- properties ---------------------------------------------------------------------------------------
def _element_grid(fmt) -> torch.Tensor:
    """Unscaled element values, float64 (the grid before the block scale)."""
    if fmt.family == "int":
        return torch.arange(fmt.qmin, fmt.qmax + 1, dtype=torch.float64)
    elem = fmt.elem if fmt.family in ("mx", "minifloat") else E2M1
    if elem.name == "int8":
        return torch.arange(-127, 128, dtype=torch.float64) / 64
    v = elem.decode(torch.arange(2**elem.bits)).double()
    return v[torch.isfinite(v)].unique()


def _grids(fmt, x: torch.Tensor) -> list[torch.Tensor]:
    """The grid each element of a 1 x n row was quantized onto, from the stored scales."""
    n = x.shape[1]
    enc = fmt.encode(x)
    base = _element_grid(fmt)
    if fmt.family == "int":
        s = enc.scales["scale"].double()
        z = None if enc.zeros is None else enc.zeros.double()
        group = fmt.group if fmt.granularity == "g" else n
        if z is not None:  # asymmetric: codes 0..qmax shifted by the block's zero-point
            base = torch.arange(0, fmt.qmax + 1, dtype=torch.float64)
        return [(base - (0 if z is None else z[i // group])) * s[i // group] for i in range(n)]
    if fmt.family == "minifloat":
        s = enc.scales["scale"].double()
        group = fmt.group if fmt.granularity == "g" else n
        return [base * s[i // group] for i in range(n)]
    if fmt.family == "mx":
        s = torch.ldexp(torch.ones(1, dtype=torch.float64), enc.scales["scale"].double() - 127)
        return [base * s[i // 32] for i in range(n)]
    s, g = E4M3.decode(enc.scales["scale"]), enc.scales["tensor_scale"]  # decoded as (P * s) * g in fp32
    return [((base.float() * s[i // 16]) * g).double() for i in range(n)]


def _nearest_on_grid(fmt, x: torch.Tensor) -> list[list[float]]:
    """Brute force for a 1 x n row: each element's nearest values on its block's grid (built from the element
    table and the stored scales; two on a tie), saturating outside; 16-bit formats: torch's own cast."""
    if fmt.family == "keep":
        return [[v] for v in x[0].to(torch.bfloat16 if fmt.name == "bf16" else torch.float16).float().tolist()]
    out = []
    for xi, grid in zip(x[0].double(), _grids(fmt, x), strict=True):
        d = (grid - xi).abs()
        out.append(grid[d <= d.min() * (1 + 1e-12)].tolist())
    return out


PROPERTY_FORMATS = ("int4 int3_pt int4_g16 int8 int4_asym_g16 int3_octav int4_fr int2_fr_g16 int3_fr_mse "
                    "fp8_e4m3 fp8_e5m2_pt fp6_e3m2 "
                    "fp6_e2m3_g16 fp4_e2m1_g32 mxfp8_e4m3 mxfp8_e5m2 mxfp6_e3m2 mxfp6_e2m3 mxfp4 mxint8 "
                    "nvfp4").split()
NOT_IDEMPOTENT = {"int4_asym_g16", "int3_octav"}  # re-deriving the range / clip from q can move the grid
FP16_MIN_NORMAL = 2.0**-14
rows = st.builds(
    lambda vals, k: torch.tensor(vals, dtype=torch.float32).reshape(1, -1) * 2.0**k,
    st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=48), st.integers(-24, 24))


@pytest.mark.parametrize("name", PROPERTY_FORMATS)
@settings(max_examples=40, deadline=None)
@given(x=rows)
def test_property_nearest_grid_point_inside_range_saturate_outside(name, x):
    fmt = get_format(name)
    q = fmt.quantize(x)[0].double()
    for xi, qi, grid in zip(x[0].double(), q, _grids(fmt, x), strict=True):
        assert bool((grid == qi).any()), "not a grid value"
        lo, hi = float(grid.min()), float(grid.max())
        if lo <= xi <= hi:
            assert abs(xi - qi) <= float((grid - xi).abs().min()) + 1e-6 * abs(float(xi)) + 1e-30
        else:
            assert float(qi) == (lo if xi < lo else hi)


@pytest.mark.parametrize("name", [n for n in PROPERTY_FORMATS if n not in NOT_IDEMPOTENT])
@settings(max_examples=40, deadline=None)
@given(x=rows)
def test_property_idempotent(name, x):
    fmt = get_format(name)
    if fmt.family in ("int", "minifloat"):  # an FP16 scale below the normal range is too coarse to
        assume(float(fmt.encode(x).scales["scale"].float().min()) >= FP16_MIN_NORMAL)  # re-find the top code
    q = fmt.quantize(x)
    qq = fmt.quantize(q)
    if name == "nvfp4":  # the FP32 tensor scale is re-derived from amax(q): equal up to its rounding
        assert torch.allclose(qq, q, rtol=2e-7, atol=0)
    else:
        assert torch.equal(qq, q)


@pytest.mark.parametrize("name", PROPERTY_FORMATS)
@settings(max_examples=40, deadline=None)
@given(x=rows)
def test_property_monotone_within_a_block(name, x):
    fmt = get_format(name)
    block = 16 if ("16" in name or name == "nvfp4") else 32
    xs = x[:, :block].sort(dim=1).values
    q = fmt.quantize(xs)
    assert bool((q[0, 1:] >= q[0, :-1]).all())
