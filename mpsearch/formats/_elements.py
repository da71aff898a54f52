"""Element types: the scalar codes that scaled and block formats store (FP8/FP6/FP4, MX's INT8).

An element type rounds float32 values onto its grid (round to nearest, ties to even, saturating:
every magnitude beyond the largest finite value, infinities included, becomes ±max; NaN stays
NaN), and maps grid values to bit codes and back. Definitions: OCP 8-bit Floating Point (OFP8)
rev 1.0 for E4M3/E5M2, OCP Microscaling (MX) v1.0 §5.3 for E3M2, E2M3, E2M1 and INT8.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from ..errors import FormatError

# torch's own FP8 casts are exact RNE with subnormals for in-range values; element types with the
# same mantissa width and a narrower exponent range round through them after a power-of-two shift
# that lines up the two subnormal grids (E3M2 through E5M2, E2M3 through E4M3).
_NATIVE = {3: (torch.float8_e4m3fn, -6), 2: (torch.float8_e5m2, -14)}  # mbits -> (dtype, emin)


@dataclass(frozen=True)
class Minifloat:
    """Sign, `ebits` exponent bits (bias `bias`), `mbits` mantissa bits.

    `specials`: "none" (every code is a number: FP6, FP4), "fn" (only S.1…1.1…1 is NaN: E4M3),
    "ieee" (top exponent is Inf/NaN: E5M2).
    """

    name: str
    ebits: int
    mbits: int
    bias: int
    specials: str = "none"

    @property
    def bits(self) -> int:
        return 1 + self.ebits + self.mbits

    @property
    def emin(self) -> int:
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest normal number (MX spec's emax_elem)."""
        top = 2**self.ebits - 1 - (1 if self.specials == "ieee" else 0)
        return top - self.bias

    @property
    def max(self) -> float:
        frac = 2 - 2.0 ** (1 - self.mbits) if self.specials == "fn" else 2 - 2.0**-self.mbits
        return 2.0**self.emax * frac

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.mbits)

    @property
    def has_nan(self) -> bool:
        return self.specials != "none"

    def round(self, x: torch.Tensor) -> torch.Tensor:
        """float32 -> nearest grid value (RNE), saturated to ±max; NaN stays NaN. Returns a new tensor."""
        native = _NATIVE.get(self.mbits)
        if native is not None and native[1] <= self.emin:
            dtype, emin = native
            shift = 2.0 ** (emin - self.emin)
            y = x.clamp(-self.max, self.max)
            if shift != 1.0:
                y.mul_(shift)
            y = y.to(dtype).to(torch.float32)
            return y.mul_(1 / shift) if shift != 1.0 else y
        return self._round_arith(x)

    def _round_arith(self, x: torch.Tensor) -> torch.Tensor:
        """RNE by the add-and-subtract trick: with C = 1.5·2^23·step, fp32 (|x| + C) − C rounds |x| to a
        multiple of step, ties to even. step = 2^(max(e, emin) − mbits) for |x| in [2^e, 2^(e+1))."""
        a = x.abs().clamp_(max=self.max)
        c = a.view(torch.int32) & 0x7F800000  # biased exponent, in place
        c.clamp_(min=(self.emin + 127) << 23).add_(((23 - self.mbits) << 23) | 0x400000)
        cf = c.view(torch.float32)
        return a.add_(cf).sub_(cf).copysign_(x)

    @functools.cached_property
    def _positive_values(self) -> torch.Tensor:
        """Every non-negative finite value, indexed by its code (codes 0 … max code)."""
        codes = torch.arange(2 ** (self.bits - 1), dtype=torch.int64)
        vals = self.decode(codes)
        return vals[torch.isfinite(vals)]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        c = codes.to(torch.int64)
        m = c & (2**self.mbits - 1)
        e = (c >> self.mbits) & (2**self.ebits - 1)
        neg = ((c >> (self.ebits + self.mbits)) & 1).bool()
        mf = m.to(torch.float32)
        sub = mf * self.min_subnormal
        normal = torch.ldexp(1 + mf / 2**self.mbits, (e - self.bias).to(torch.float32))
        v = torch.where(e == 0, sub, normal)
        top = e == 2**self.ebits - 1
        if self.specials == "ieee":
            v = torch.where(top, torch.where(m == 0, math.inf, math.nan), v)
        elif self.specials == "fn":
            v = torch.where(top & (m == 2**self.mbits - 1), math.nan, v)
        return torch.where(neg, -v, v)

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        """Grid values (output of `round`) -> int64 codes. -0.0 keeps its sign bit; NaN -> S.1…1.1…1."""
        v = values.to(torch.float32)
        nan = torch.isnan(v)
        if bool(nan.any()) and not self.has_nan:
            raise FormatError(f"{self.name} has no NaN code but the tensor holds NaN; remove NaNs first")
        table = self._positive_values.to(v.device)
        mag = torch.where(nan, 0.0, v.abs())
        code = torch.searchsorted(table, mag)
        if not bool((table[code.clamp(max=len(table) - 1)] == mag).all()):
            raise FormatError(f"value not on the {self.name} grid; round it with the format first")
        code = torch.where(nan, 2 ** (self.bits - 1) - 1, code)
        return code | (torch.signbit(v).to(torch.int64) << (self.bits - 1))


@dataclass(frozen=True)
class IntElement:
    """MX's INT8 element: two's complement with an implicit scale 2^-frac (MX v1.0 §5.3).

    Symmetric: codes are clamped to ±(2^(bits-1) - 1), so the largest magnitude is 1.984375 for
    both signs and -2.0 (0x80) is never produced (as in Microsoft's MX reference library).
    """

    name: str = "int8"
    bits: int = 8
    frac: int = 6

    @property
    def emax(self) -> int:
        return 0

    @property
    def max(self) -> float:
        return (2 ** (self.bits - 1) - 1) / 2**self.frac

    def round(self, x: torch.Tensor) -> torch.Tensor:
        q = 2 ** (self.bits - 1) - 1
        return (x * 2.0**self.frac).round_().clamp_(-q, q).mul_(2.0**-self.frac)

    def encode(self, values: torch.Tensor) -> torch.Tensor:
        return (values * 2.0**self.frac).round().to(torch.int64) & (2**self.bits - 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        c = codes.to(torch.int64)
        c = torch.where(c >= 2 ** (self.bits - 1), c - 2**self.bits, c)
        return c.to(torch.float32) * 2.0**-self.frac


E4M3 = Minifloat("e4m3", 4, 3, 7, "fn")
E5M2 = Minifloat("e5m2", 5, 2, 15, "ieee")
E3M2 = Minifloat("e3m2", 3, 2, 3)
E2M3 = Minifloat("e2m3", 2, 3, 1)
E2M1 = Minifloat("e2m1", 2, 1, 1)
INT8 = IntElement()

MINIFLOATS = {"fp8_e4m3": E4M3, "fp8_e5m2": E5M2, "fp6_e3m2": E3M2, "fp6_e2m3": E2M3, "fp4_e2m1": E2M1}
