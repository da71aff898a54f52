"""Symmetric integer formats at per-tensor, per-channel and per-group scale.

Symmetric b-bit uses the restricted range [-(2^(b-1)-1), 2^(b-1)-1] so that zero is exact and the
grid is symmetric (INT2 is ternary). The scale is absmax / qmax, stored as FP16 (16 bits counted);
rounding is round-half-to-even (torch.round).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from ..errors import FormatError
from ._base import Format, FormatFamily, as_rows, col_count, grouped, register_family, row_count, ungrouped

SCALE_BITS = 16


def _fp16_scale(amax: torch.Tensor, qmax: int) -> torch.Tensor:
    """absmax/qmax rounded to the FP16 value that is actually stored; 1 where the block is all zero."""
    s = (amax / qmax).to(torch.float16).to(amax.dtype)
    return torch.where(s > 0, s, torch.ones_like(s))


@dataclass(frozen=True)
class IntFormat(Format):
    bits: int
    granularity: str = "pc"  # "pt" per-tensor | "pc" per-output-channel | "g" per-group
    group: int = 0
    family = "int"

    @property
    def name(self) -> str:
        suffix = {"pt": "_pt", "pc": "", "g": f"_g{self.group}"}[self.granularity]
        return f"int{self.bits}{suffix}"

    @property
    def element_bits(self) -> float:
        return float(self.bits)

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        if self.granularity == "pt":
            blocks = xf.reshape(1, 1, -1)
        elif self.granularity == "pc":
            blocks = as_rows(xf).unsqueeze(1)
        else:
            blocks = grouped(as_rows(xf), self.group)
        s = _fp16_scale(blocks.abs().amax(dim=-1, keepdim=True), self.qmax)
        q = torch.clamp(torch.round(blocks / s), -self.qmax, self.qmax) * s
        if self.granularity == "pt":
            return q.reshape(x.shape).to(x.dtype)
        return ungrouped(q, x.shape).to(x.dtype)

    def scale_count(self, shape: tuple[int, ...]) -> int:
        if self.granularity == "pt":
            return 1
        if self.granularity == "pc":
            return row_count(shape)
        return row_count(shape) * math.ceil(col_count(shape) / self.group)

    def storage_bits(self, shape: tuple[int, ...]) -> int:
        return math.prod(shape) * self.bits + self.scale_count(shape) * SCALE_BITS


@register_family
class IntFamily(FormatFamily):
    pattern = re.compile(r"int([2-8])(?:_(pt|pc|g(\d+)))?")

    def build(self, m: re.Match[str]) -> Format:
        bits, gran, group = int(m.group(1)), m.group(2) or "pc", m.group(3)
        if group is not None:
            if int(group) < 1:
                raise FormatError(f"group size must be at least 1 in {m.group(0)!r}, e.g. int4_g128")
            return IntFormat(bits, "g", int(group))
        return IntFormat(bits, gran)

    def catalogue(self) -> list[str]:
        return [f"int{b}{s}" for b in range(2, 9) for s in ("", "_pt", "_g128")]


@dataclass(frozen=True)
class FloatKeep(Format):
    """Keep the weight in 16 bits (the 'do not quantize' choice), rounded to that dtype."""

    dtype_name: str = "bf16"
    family = "keep"

    @property
    def name(self) -> str:
        return self.dtype_name

    @property
    def element_bits(self) -> float:
        return 16.0

    @property
    def is_full_precision(self) -> bool:
        return True

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        dt = torch.bfloat16 if self.dtype_name == "bf16" else torch.float16
        return x.to(dt).to(x.dtype)

    def storage_bits(self, shape: tuple[int, ...]) -> int:
        return math.prod(shape) * 16


@register_family
class KeepFamily(FormatFamily):
    pattern = re.compile(r"(bf16|fp16)")

    def build(self, m: re.Match[str]) -> Format:
        return FloatKeep(m.group(1))

    def catalogue(self) -> list[str]:
        return ["bf16", "fp16"]
