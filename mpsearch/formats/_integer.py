"""Integer formats (symmetric or asymmetric; per tensor, channel or group) and the 16-bit 'keep' formats.

Grammar: `int{b}[_asym|_fr][_pt|_pc|_g{G}][_mse|_octav|_p{P}]`, b = 2…8; no granularity suffix
means per output channel; the last suffix picks the clip (see `_scaling`). Examples: `int4`,
`int4_g128`, `int8_pt`, `int4_asym_g64`, `int4_g128_mse`, `int3_octav`, `int4_fr_g128`.

Symmetric b-bit uses the restricted range [-(2^(b-1)-1), 2^(b-1)-1] (zero exact, grid symmetric;
INT2 is ternary), stored as b-bit two's complement. Full-range symmetric (`_fr`) uses all 2^b codes
[-2^(b-1), 2^(b-1)-1] the way NNCF's INT4_SYM and AutoRound do: the block's element of largest
magnitude w* maps to code -2^(b-1) through a signed FP16 scale s = -w*/2^(b-1) (w* = min on ties of
|min| and max, so s > 0), i.e. the grid's extra level lands on the side where the extreme is; the
clip c (from the clip suffix) replaces |w*|. Same storage as symmetric (the sign rides in the FP16
scale). Asymmetric uses [0, 2^b-1] with an integer
zero-point z = round(-lo/s) stored in b bits. Rounding is round-half-to-even (torch.round). Weight
scales are FP16 (16 bits each, counted); activation scales are FP32 and live in the plan.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from ..errors import FormatError
from ._base import Encoded, Format, FormatFamily, Granularity, as_rows, register_family
from ._scaling import CLIP_PATTERN, asymmetric_range, clip_name, div, fp16_scale, quantile_of, symmetric_clip

SCALE_BITS = 16


@dataclass(frozen=True)
class IntFormat(Format):
    bits: int
    granularity: str = "pc"  # "pt" per-tensor | "pc" per-output-channel | "g" per-group
    group: int = 0
    asym: bool = False
    clip: str = "absmax"
    full_range: bool = False
    family = "int"

    @property
    def gran(self) -> Granularity:
        return Granularity(self.granularity, self.group)

    @property
    def name(self) -> str:
        return f"int{self.bits}{self._range_suffix}{self.gran.suffix}{clip_name(self.clip)}"

    @property
    def _range_suffix(self) -> str:
        return "_asym" if self.asym else "_fr" if self.full_range else ""

    @property
    def element_bits(self) -> float:
        return float(self.bits)

    @property
    def qmax(self) -> int:
        """Largest code magnitude (symmetric) or largest code (asymmetric)."""
        return 2**self.bits - 1 if self.asym else 2 ** (self.bits - 1) - 1

    @property
    def qmin(self) -> int:
        """Smallest code: 0 (asymmetric), -qmax (restricted symmetric) or -2^(b-1) (full range)."""
        return 0 if self.asym else -(2 ** (self.bits - 1)) if self.full_range else -self.qmax

    @property
    def layout(self) -> str:
        zero = f" + int{self.bits} zero-point" if self.asym else ""
        return f"fp16 scale{zero} {self.gran.describe()}"

    # -- the shared arithmetic: parameters, codes, values ------------------------------------------
    def _levels(self, x: torch.Tensor, s: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """Integer codes (as float) of `x` at scale `s` and zero-point `z`."""
        q = (x / s).round_()
        if z is None:
            return q.clamp_(self.qmin, self.qmax)
        return q.add_(z).clamp_(0, self.qmax)

    @staticmethod
    def _values(q: torch.Tensor, s: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        return (q if z is None else q - z).mul_(s)

    def _params(self, blocks: torch.Tensor, scale) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(scale, zero-point or None) per block; `scale(range, qmax)` turns a clip into a stored scale."""

        def zero_point(lo, s):
            return (-lo / s).round_().clamp_(0, self.qmax).add_(0.0)  # +0.0, never -0.0

        if not self.asym:
            sym_scale = self._signed_scale(blocks, scale)

            def sym_err(b, c):
                s = sym_scale(c)
                return (self._values(self._levels(b, s, None), s, None) - b).pow_(2).sum(-1, keepdim=True)

            return sym_scale(symmetric_clip(blocks, self.clip, self.bits, sym_err)), None

        def asym_err(b, lohi):
            s = scale(lohi[1] - lohi[0], self.qmax)
            z = zero_point(lohi[0], s)
            return (self._values(self._levels(b, s, z), s, z) - b).pow_(2).sum(-1, keepdim=True)

        lo, hi = asymmetric_range(blocks, self.clip, asym_err)
        s = scale(hi - lo, self.qmax)
        return s, zero_point(lo, s)

    def _signed_scale(self, blocks: torch.Tensor, scale):
        """clip -> scale: c/qmax (restricted), or ±c/2^(b-1) with the sign that sends the block's
        largest-magnitude element to code -2^(b-1) (full range)."""
        if not self.full_range:
            return lambda c: scale(c, self.qmax)
        lo, hi = torch.aminmax(blocks, dim=-1, keepdim=True)
        sign = torch.where(-lo >= hi, 1.0, -1.0)
        return lambda c: scale(c, -self.qmin) * sign

    # -- weights ------------------------------------------------------------------------------------
    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.gran.blocks(x.float())
        s, z = self._params(blocks, fp16_scale)
        return self.gran.unblock(self._values(self._levels(blocks, s, z), s, z), x.shape).to(x.dtype)

    def encode(self, x: torch.Tensor) -> Encoded:
        blocks = self.gran.blocks(x.float())
        s, z = self._params(blocks, fp16_scale)
        q = as_rows(self.gran.unblock(self._levels(blocks, s, z), x.shape)).to(torch.int64)
        codes = q if self.asym else q & (2**self.bits - 1)
        zeros = None if z is None else z.reshape(-1).to(torch.int64)
        return Encoded(codes, self.bits, {"scale": s.reshape(-1).to(torch.float16)}, zeros)

    def decode(self, enc: Encoded, shape: tuple[int, ...]) -> torch.Tensor:
        q = enc.codes.to(torch.int64)
        if not self.asym:
            q = torch.where(q >= 2 ** (self.bits - 1), q - 2**self.bits, q)
        blocks = self.gran.blocks(q.to(torch.float32).reshape(shape))
        lead = blocks.shape[:-1] + (1,)
        s = enc.scales["scale"].float().reshape(lead)
        z = None if enc.zeros is None else enc.zeros.to(torch.float32).reshape(lead)
        return self.gran.unblock(self._values(blocks, s, z), shape)

    def storage_bits(self, shape: tuple[int, ...]) -> int:
        n = self.gran.count(shape)
        return math.prod(shape) * self.bits + n * SCALE_BITS + (n * self.bits if self.asym else 0)

    # -- a fixed grid, for error-feedback rounding (mpsearch.rounding: GPTQ) ------------------------
    def grid_params(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(scale, zero-point) from `rows` (R, n) as one block per row (per tensor: one block), each (R,)
        or (1,): the parameters `encode` would give a block holding exactly those values."""
        blocks = rows.float().reshape(1, 1, -1) if self.granularity == "pt" else rows.float().unsqueeze(1)
        s, z = self._params(blocks, fp16_scale)
        return s.reshape(-1), None if z is None else z.reshape(-1)

    def grid_levels(self, col: torch.Tensor, grid) -> torch.Tensor:
        """Codes (as float) of one column (R,) on a fixed grid."""
        return self._levels(col, grid[0].to(col.dtype), None if grid[1] is None else grid[1].to(col.dtype))

    def grid_values(self, q: torch.Tensor, grid) -> torch.Tensor:
        return self._values(q.clone(), grid[0].to(q.dtype), None if grid[1] is None else grid[1].to(q.dtype))

    def grid_encode(self, codes: torch.Tensor, grids: list) -> Encoded:
        """The stored form of codes (R, K) on the grids of consecutive blocks along K (`grid_params`)."""
        q = codes.to(torch.int64)
        s = torch.stack([g[0] for g in grids], dim=-1).reshape(-1)  # (row, block) order, as `encode`
        z = None if self.asym is False else torch.stack([g[1] for g in grids], dim=-1).reshape(-1).to(torch.int64)
        return Encoded(q if self.asym else q & (2**self.bits - 1), self.bits, {"scale": s.to(torch.float16)}, z)

    # -- activations: per tensor, FP32 scale from calibration ---------------------------------------
    def check_activation(self) -> None:
        if self.full_range:  # a signed per-tensor scale buys one level on one side of an activation: not worth a sign
            raise FormatError(f"full-range (_fr) formats are for weights; after the colon write "
                              f"int{self.bits}{clip_name(self.clip)} or int{self.bits}_asym{clip_name(self.clip)}")
        if self.granularity != "pc":
            base = f"int{self.bits}{self._range_suffix}{clip_name(self.clip)}"
            raise FormatError(f"activation formats are per tensor; write {base} after the colon, "
                              f"not {self.name}")

    def calibrate(self, sample: torch.Tensor) -> dict[str, float]:
        self.check_activation()
        s, z = self._params(sample.float().reshape(1, -1), _fp32_scale)
        return {"scale": float(s), **({} if z is None else {"zero": float(z)})}

    def act_quantize(self, x: torch.Tensor, params: dict[str, float]) -> torch.Tensor:
        s, z = params["scale"], params.get("zero")
        return self._values(self._levels(x.float(), s, z), s, z).to(x.dtype)


def _fp32_scale(rng: torch.Tensor, qmax: float) -> torch.Tensor:
    s = div(rng.float(), qmax)
    return torch.where(s > 0, s, torch.ones_like(s))


@register_family
class IntFamily(FormatFamily):
    name = "int"
    pattern = re.compile(r"int([2-8])(_asym|_fr)?" + Granularity.PATTERN + CLIP_PATTERN)

    def build(self, m: re.Match[str]) -> Format:
        asym = m.group(2) == "_asym"
        if asym and m.group(5) == "octav":
            raise FormatError(f"OCTAV clipping is defined for symmetric formats; use {m.group(0)[:-6]}_mse")
        if (m.group(5) or '').startswith('p'):
            quantile_of(m.group(5))  # refuse an out-of-range percentile by name, not at first use
        gran = Granularity.parse(m.group(3), m.group(4))
        return IntFormat(int(m.group(1)), gran.kind, gran.group, asym, m.group(5) or "absmax",
                         full_range=m.group(2) == "_fr")

    def catalogue(self) -> list[str]:
        sym = [f"int{b}{s}" for b in range(2, 9) for s in ("", "_pt", "_g128")]
        return sym + ["int4_g32", "int4_g64", "int4_asym", "int4_asym_g64", "int4_asym_g128", "int8_asym",
                      "int4_mse", "int4_g128_mse", "int4_octav",
                      *(f"int{b}_fr{g}" for b in (2, 3, 4, 5, 6, 8) for g in ("", "_g128")),
                      "int4_fr_g32", "int4_fr_g64", "int4_fr_g128_mse", "int8_fr_g128_mse"]


@dataclass(frozen=True)
class FloatKeep(Format):
    """Keep the weight in 16 bits (the 'do not quantize' choice), rounded to that dtype."""

    dtype_name: str = "bf16"
    family = "keep"

    @property
    def name(self) -> str:
        return self.dtype_name

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.dtype_name == "bf16" else torch.float16

    @property
    def element_bits(self) -> float:
        return 16.0

    @property
    def is_full_precision(self) -> bool:
        return True

    @property
    def layout(self) -> str:
        return "no scale"

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.dtype).to(x.dtype)

    def encode(self, x: torch.Tensor) -> Encoded:
        return Encoded(as_rows(x.to(self.dtype)).view(torch.int16).to(torch.int64) & 0xFFFF, 16)

    def decode(self, enc: Encoded, shape: tuple[int, ...]) -> torch.Tensor:
        return enc.codes.to(torch.int16).view(self.dtype).float().reshape(shape)

    def storage_bits(self, shape: tuple[int, ...]) -> int:
        return math.prod(shape) * 16


@register_family
class KeepFamily(FormatFamily):
    name = "keep"
    pattern = re.compile(r"(bf16|fp16)")

    def build(self, m: re.Match[str]) -> Format:
        return FloatKeep(m.group(1))

    def catalogue(self) -> list[str]:
        return ["bf16", "fp16"]
