"""Element types against tables built here from the E/M/bias definitions, and against torch's FP8 casts."""

import math

import pytest
import torch

from mpsearch.formats import E2M1, E2M3, E3M2, E4M3, E5M2, INT8

# name -> (element type, ebits, mbits, bias, specials, max, min normal, min subnormal)  (OFP8 / OCP MX v1.0)
SPECS = {
    "e4m3": (E4M3, 4, 3, 7, "fn", 448.0, 2.0**-6, 2.0**-9),
    "e5m2": (E5M2, 5, 2, 15, "ieee", 57344.0, 2.0**-14, 2.0**-16),
    "e3m2": (E3M2, 3, 2, 3, "none", 28.0, 2.0**-2, 2.0**-4),
    "e2m3": (E2M3, 2, 3, 1, "none", 7.5, 1.0, 2.0**-3),
    "e2m1": (E2M1, 2, 1, 1, "none", 6.0, 1.0, 0.5),
}


def reference_value(code: int, e: int, m: int, bias: int, specials: str) -> float:
    """Decode one bit pattern from first principles (pure Python, no mpsearch code)."""
    sign = -1.0 if code >> (e + m) & 1 else 1.0
    exp, man = code >> m & (2**e - 1), code & (2**m - 1)
    if specials == "ieee" and exp == 2**e - 1:
        return sign * math.inf if man == 0 else math.nan
    if specials == "fn" and exp == 2**e - 1 and man == 2**m - 1:
        return math.nan
    if exp == 0:
        return sign * man * 2.0 ** (1 - bias - m)
    return sign * (1 + man / 2**m) * 2.0 ** (exp - bias)


def table(name):
    elem, e, m, bias, specials, *_ = SPECS[name]
    return torch.tensor([reference_value(c, e, m, bias, specials) for c in range(2 ** (1 + e + m))])


def brute_round(x: torch.Tensor, name: str) -> torch.Tensor:
    """Nearest finite value, ties to the even code, saturating at ±max; NaN stays NaN."""
    t = table(name)
    pos = t[: len(t) // 2]
    pos = pos[torch.isfinite(pos)].double()
    a = x.double().abs().clamp(max=float(pos.max()))
    d = (a[:, None] - pos[None, :]).abs()
    nearest = d == d.min(dim=1, keepdim=True).values
    idx = torch.where(nearest, torch.arange(len(pos)) % 2, 2).argmin(dim=1)  # on a tie the even code wins
    out = pos[idx].float().copysign(x)
    return torch.where(torch.isnan(x), x, out)


def probe_inputs(name: str) -> torch.Tensor:
    """Every value, every midpoint, one float32 ulp either side of it, overflow, infinities, NaN, ±0."""
    pos = table(name)[: len(table(name)) // 2]
    pos = pos[torch.isfinite(pos)]
    mids = (pos[1:] + pos[:-1]) / 2
    near = torch.cat([torch.nextafter(mids, torch.full_like(mids, math.inf)),
                      torch.nextafter(mids, torch.full_like(mids, -math.inf))])
    big = torch.tensor([pos.max() * 1.01, pos.max() * 1.5, 1e30, math.inf, 2.0**-140, 0.0])
    g = torch.Generator().manual_seed(0)
    rnd = torch.randn(4000, generator=g) * float(pos.max()) / 4
    tiny = torch.rand(2000, generator=g) * float(pos[2]) * 2  # the subnormal range
    x = torch.cat([pos, mids, near, big, rnd, tiny])
    return torch.cat([x, -x, torch.tensor([math.nan, -0.0])])


@pytest.mark.parametrize("name", SPECS)
def test_decode_matches_independent_table_for_every_code(name):
    elem, e, m, bias, specials, vmax, vmin_normal, vmin_sub = SPECS[name]
    ref = table(name)
    got = elem.decode(torch.arange(2 ** (1 + e + m)))
    assert torch.equal(torch.isnan(got), torch.isnan(ref))
    ok = ~torch.isnan(ref)
    assert torch.equal(got[ok], ref[ok])
    assert torch.equal(torch.signbit(got[ok]), torch.signbit(ref[ok]))  # -0.0 has the sign bit
    finite = ref[torch.isfinite(ref)]
    assert elem.max == vmax == float(finite.max())
    assert elem.min_subnormal == vmin_sub == float(finite[finite > 0].min())
    assert 2.0**elem.emin == vmin_normal


def test_value_sets_of_the_small_formats():
    assert table("e2m1")[:8].tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert len(set(table("e3m2").tolist())) == 63  # 64 codes, +0 and -0 compare equal
    assert E4M3.emax == 8 and E5M2.emax == 15 and E3M2.emax == 4 and E2M3.emax == 2 and E2M1.emax == 2


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("path", ["round", "_round_arith"])
def test_rounding_is_saturating_rne_to_the_table(name, path):
    elem = SPECS[name][0]
    x = probe_inputs(name)
    got = getattr(elem, path)(x)
    ref = brute_round(x, name)
    assert torch.equal(torch.isnan(got), torch.isnan(ref))
    ok = ~torch.isnan(ref)
    assert torch.equal(got[ok], ref[ok])
    assert float(elem.round(torch.tensor([math.inf]))) == elem.max  # infinities saturate too
    assert float(elem.round(torch.tensor([-1e30]))) == -elem.max


@pytest.mark.parametrize("name", SPECS)
def test_encode_inverts_decode(name):
    elem, e, m, *_ = SPECS[name]
    codes = torch.arange(2 ** (1 + e + m))
    vals = elem.decode(codes)
    keep = torch.isfinite(vals)
    assert torch.equal(elem.encode(vals[keep]), codes[keep])


@pytest.mark.parametrize("name,dtype", [("e4m3", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)])
def test_fp8_bit_exact_against_torch_casts(name, dtype):
    elem, top = SPECS[name][0], SPECS[name][5]  # the max from the OFP8 definition, not the code's attribute
    codes = torch.arange(256, dtype=torch.uint8)
    ours, theirs = elem.decode(codes.to(torch.int64)), codes.view(dtype).float()
    assert torch.equal(torch.isnan(ours), torch.isnan(theirs))
    assert torch.equal(ours[~torch.isnan(ours)], theirs[~torch.isnan(theirs)])

    x = probe_inputs(name)
    clamped = x.clamp(-top, top)  # torch's overflow behaviour differs per dtype: clamp first
    ref = clamped.to(dtype)
    got = elem.round(x)
    assert torch.equal(elem.encode(got), ref.view(torch.uint8).to(torch.int64))  # codes, NaN and -0 included
    # overflow: we saturate; torch saturates E4M3FN but sends E5M2 past 61440 to inf
    over = torch.tensor([1e6, -1e6, math.inf])
    assert elem.round(over).tolist() == [top, -top, top]
    if name == "e5m2":
        assert torch.isinf(torch.tensor([61440.0]).to(dtype).float()).all()
        assert float(elem.round(torch.tensor([61439.0]))) == 57344.0
    else:
        assert float(torch.tensor([1e6]).to(dtype).float()) == 448.0


def test_fp4_and_fp6_nan_cannot_be_encoded():
    from mpsearch.errors import FormatError

    assert math.isnan(float(E2M1.round(torch.tensor([math.nan]))))
    with pytest.raises(FormatError, match="no NaN"):
        E2M1.encode(torch.tensor([math.nan]))
    with pytest.raises(FormatError, match="grid"):
        E2M1.encode(torch.tensor([0.7]))


def test_mx_int8_element():
    x = torch.tensor([1.99, -1.99, -2.0, 0.0078125, 0.0234375, -0.3, 1.0])
    got = INT8.round(x)
    # step 2^-6, RNE (0.0078125 = 0.5 step -> 0; 0.0234375 = 1.5 steps -> 2 steps), symmetric clamp at 127/64
    assert got.tolist() == [127 / 64, -127 / 64, -127 / 64, 0.0, 2 / 64, -19 / 64, 1.0]
    codes = INT8.encode(got)
    assert codes.tolist() == [127, 129, 129, 0, 2, 256 - 19, 64]  # two's complement bytes
    assert torch.equal(INT8.decode(codes), got)
