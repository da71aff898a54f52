"""Scaled minifloat formats: FP8 (E4M3, E5M2), FP6 (E3M2, E2M3), FP4 (E2M1) elements with an FP16 scale.

Grammar: `fp8_e4m3`, `fp8_e5m2`, `fp6_e3m2`, `fp6_e2m3`, `fp4_e2m1`, then optionally `_pt` /
`_pc` / `_g{G}` (default: per output channel) and `_mse` / `_p{P}` for the clip. Each block's
scale is the smallest FP16 value ≥ clip / element max; elements are the saturating RNE conversion
of x / scale (see `_elements`). E.g. `fp4_e2m1_g32` = 4 + 16/32 = 4.5 bits per element.
As an activation format (`fp8_e4m3:fp8_e4m3`) the scale is per tensor, FP32, from calibration.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from ..errors import FormatError
from ._base import Encoded, Format, FormatFamily, Granularity, as_rows, register_family
from ._elements import MINIFLOATS, Minifloat
from ._integer import SCALE_BITS
from ._scaling import CLIP_PATTERN, clip_name, div, fp16_scale, quantile_of, symmetric_clip


@dataclass(frozen=True)
class MinifloatFormat(Format):
    kind: str = "fp8_e4m3"
    granularity: str = "pc"
    group: int = 0
    clip: str = "absmax"
    family = "minifloat"

    @property
    def elem(self) -> Minifloat:
        return MINIFLOATS[self.kind]

    @property
    def gran(self) -> Granularity:
        return Granularity(self.granularity, self.group)

    @property
    def name(self) -> str:
        return f"{self.kind}{self.gran.suffix}{clip_name(self.clip)}"

    @property
    def element_bits(self) -> float:
        return float(self.elem.bits)

    @property
    def layout(self) -> str:
        return f"fp16 scale {self.gran.describe()}"

    def _scale(self, blocks: torch.Tensor, scale) -> torch.Tensor:
        def err(b, c):
            s = scale(c, self.elem.max)
            return (self.elem.round(b / s).mul_(s) - b).pow_(2).sum(-1, keepdim=True)

        return scale(symmetric_clip(blocks, self.clip, None, err), self.elem.max)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self.gran.blocks(x.float())
        s = self._scale(blocks, fp16_scale)
        return self.gran.unblock(self.elem.round(blocks / s).mul_(s), x.shape).to(x.dtype)

    def encode(self, x: torch.Tensor) -> Encoded:
        blocks = self.gran.blocks(x.float())
        s = self._scale(blocks, fp16_scale)
        v = as_rows(self.gran.unblock(self.elem.round(blocks / s), x.shape))
        return Encoded(self.elem.encode(v), self.elem.bits, {"scale": s.reshape(-1).to(torch.float16)})

    def decode(self, enc: Encoded, shape: tuple[int, ...]) -> torch.Tensor:
        blocks = self.gran.blocks(self.elem.decode(enc.codes).reshape(shape))
        s = enc.scales["scale"].float().reshape(blocks.shape[:-1] + (1,))
        return self.gran.unblock(blocks * s, shape)

    def storage_bits(self, shape: tuple[int, ...]) -> int:
        return math.prod(shape) * self.elem.bits + self.gran.count(shape) * SCALE_BITS

    def check_activation(self) -> None:
        if self.granularity != "pc":
            raise FormatError(f"activation formats are per tensor; write {self.kind}{clip_name(self.clip)} "
                              f"after the colon, not {self.name}")

    def calibrate(self, sample: torch.Tensor) -> dict[str, float]:
        self.check_activation()

        def fp32(c, emax):
            s = div(c.float(), emax)
            return torch.where(s > 0, s, torch.ones_like(s))

        return {"scale": float(self._scale(sample.float().reshape(1, -1), fp32))}

    def act_quantize(self, x: torch.Tensor, params: dict[str, float]) -> torch.Tensor:
        s = params["scale"]
        return self.elem.round(x.float() / s).mul_(s).to(x.dtype)


@register_family
class MinifloatFamily(FormatFamily):
    name = "minifloat"
    pattern = re.compile("(" + "|".join(MINIFLOATS) + ")" + Granularity.PATTERN + CLIP_PATTERN)

    def build(self, m: re.Match[str]) -> Format:
        if m.group(4) == "octav":
            raise FormatError(f"OCTAV clipping is defined for integer formats; use {m.group(1)}_mse instead")
        if (m.group(4) or '').startswith('p'):
            quantile_of(m.group(4))  # refuse an out-of-range percentile by name, not at first use
        gran = Granularity.parse(m.group(2), m.group(3))
        return MinifloatFormat(m.group(1), gran.kind, gran.group, m.group(4) or "absmax")

    def catalogue(self) -> list[str]:
        return ["fp8_e4m3", "fp8_e4m3_pt", "fp8_e5m2", "fp8_e5m2_pt", "fp6_e3m2", "fp6_e3m2_g32", "fp6_e2m3",
                "fp6_e2m3_g32", "fp4_e2m1", "fp4_e2m1_g32", "fp4_e2m1_g16"]
