"""OCP Microscaling (MX) v1.0: blocks of 32 elements along the reduction dimension, one E8M0 scale each.

Names: `mxfp8_e4m3`, `mxfp8_e5m2`, `mxfp6_e3m2`, `mxfp6_e2m3`, `mxfp4` (E2M1), `mxint8`.
Scale choice (spec §6.3): shared_exp = floor(log2(max_i |V_i|)) − emax_elem, clamped below at
−127 (the smallest E8M0 scale); X = 2^shared_exp; P_i = element(V_i / X), saturating at the
element max. floor(log2 ·) comes from frexp, so it is exact at powers of two. An all-zero block
stores scale code 0 (2^−127) and zero elements; a block holding Inf/NaN stores the NaN scale
(0xFF) and decodes to NaN. Storage: element bits + 8/32 (a partial last block of a row still
stores one scale: bits/element = b + 8·ceil(K/32)/K).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from ._base import Encoded, Format, FormatFamily, Granularity, as_rows, register_family
from ._elements import E2M1, E2M3, E3M2, E4M3, E5M2, INT8
from ._scaling import absmax

BLOCK = 32
BLOCKS = Granularity("g", BLOCK)
E8M0_BIAS = 127
E8M0_NAN = 255
ELEMENTS = {"mxfp8_e4m3": E4M3, "mxfp8_e5m2": E5M2, "mxfp6_e3m2": E3M2, "mxfp6_e2m3": E2M3, "mxfp4": E2M1,
            "mxint8": INT8}


def floor_log2(a: torch.Tensor) -> torch.Tensor:
    """floor(log2(a)) for a > 0, exactly (frexp: a = m·2^e with m in [0.5, 1))."""
    return torch.frexp(a)[1] - 1


def _pow2(e: torch.Tensor) -> torch.Tensor:
    """The E8M0 scale value 2^e as float32 (exact, 2^-127 is an fp32 subnormal); NaN for the NaN code."""
    x = torch.ldexp(torch.ones_like(e, dtype=torch.float32), e)
    return torch.where(e == E8M0_NAN - E8M0_BIAS, math.nan, x)


@dataclass(frozen=True)
class MXFormat(Format):
    kind: str = "mxfp4"
    family = "mx"

    @property
    def elem(self):
        return ELEMENTS[self.kind]

    @property
    def name(self) -> str:
        return self.kind

    @property
    def element_bits(self) -> float:
        return float(self.elem.bits)

    @property
    def layout(self) -> str:
        return f"E8M0 scale per {BLOCK} along K"

    def _shared_exp(self, blocks: torch.Tensor) -> torch.Tensor:
        """int32 shared exponent per block, (R, nb, 1); E8M0_NAN - 127 marks a non-finite block."""
        amax = absmax(blocks)
        e = (floor_log2(amax) - self.elem.emax).clamp_(min=-E8M0_BIAS)
        e = torch.where(amax == 0, -E8M0_BIAS, e)
        return torch.where(torch.isfinite(amax), e, E8M0_NAN - E8M0_BIAS)

    def _elements(self, blocks: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(P_i on the element grid, X) with X = 2^e (NaN for a non-finite block)."""
        x = _pow2(e)
        return self.elem.round(blocks / x), x

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        blocks = BLOCKS.blocks(x.float())
        p, scale = self._elements(blocks, self._shared_exp(blocks))
        return BLOCKS.unblock(p.mul_(scale), x.shape).to(x.dtype)

    def encode(self, x: torch.Tensor) -> Encoded:
        blocks = BLOCKS.blocks(x.float())
        e = self._shared_exp(blocks)
        p, _ = self._elements(blocks, e)
        codes = self.elem.encode(torch.nan_to_num(as_rows(BLOCKS.unblock(p, x.shape)), nan=0.0))
        return Encoded(codes, self.elem.bits, {"scale": (e + E8M0_BIAS).reshape(-1).to(torch.uint8)})

    def decode(self, enc: Encoded, shape: tuple[int, ...]) -> torch.Tensor:
        blocks = BLOCKS.blocks(self.elem.decode(enc.codes).reshape(shape))
        code = enc.scales["scale"].to(torch.int32).reshape(blocks.shape[:-1] + (1,))
        return BLOCKS.unblock(blocks * _pow2(code - E8M0_BIAS), shape)

    def storage_bits(self, shape: tuple[int, ...]) -> int:
        return math.prod(shape) * self.elem.bits + BLOCKS.count(shape) * 8

    # -- a fixed grid, for error-feedback rounding (mpsearch.rounding: GPTQ) ------------------------
    granularity = "g"  # one shared exponent per BLOCK along K: GPTQ fixes it when its sweep reaches the block
    group = BLOCK

    def grid_params(self, rows: torch.Tensor) -> torch.Tensor:
        """Shared exponent (R,) of `rows` (R, n) taken as one block per row: what `encode` would store."""
        return self._shared_exp(rows.float().unsqueeze(1)).reshape(-1)

    def grid_levels(self, col: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """Element values of one column (R,) under fixed shared exponents."""
        return self.elem.round(col.float() / _pow2(grid)).to(col.dtype)

    def grid_values(self, q: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return q * _pow2(grid).to(q.dtype)

    def grid_encode(self, codes: torch.Tensor, grids: list) -> Encoded:
        """The stored form of element values (R, K) on the exponents of consecutive blocks (`grid_params`)."""
        e = torch.stack(grids, dim=-1).reshape(-1)  # (row, block) order, as `encode`
        elems = self.elem.encode(torch.nan_to_num(codes.float(), nan=0.0))
        return Encoded(elems, self.elem.bits, {"scale": (e + E8M0_BIAS).to(torch.uint8)})


@register_family
class MXFamily(FormatFamily):
    name = "mx"
    pattern = re.compile("(" + "|".join(ELEMENTS) + ")")

    def build(self, m: re.Match[str]) -> Format:
        return MXFormat(m.group(1))

    def catalogue(self) -> list[str]:
        return list(ELEMENTS)
