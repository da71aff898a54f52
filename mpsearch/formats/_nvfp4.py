"""NVFP4 (NVIDIA Blackwell): E2M1 elements in blocks of 16 along K, an E4M3 scale per block, and
one FP32 scale per tensor.

In float32, in this order: g = amax(tensor) / (6·448) (1 if the tensor is all zero); per block
s = E4M3((amax(block) / 6) / g) (RNE, saturating at 448); elements P = E2M1(x / (s·g)),
saturating at 6; decoded value (P·s)·g. A block whose scale rounds to E4M3 zero decodes to zeros.
Storage: 4 bits per element + 8 per block of 16 (4.5) + 32 per tensor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import torch

from ._base import Encoded, Format, FormatFamily, Granularity, as_rows, register_family
from ._elements import E2M1, E4M3
from ._scaling import absmax, div

BLOCK = 16
BLOCKS = Granularity("g", BLOCK)
TENSOR_SCALE_BITS = 32


@dataclass(frozen=True)
class NVFP4Format(Format):
    family = "nvfp4"
    # Fixed by `grid_bind` for error-feedback rounding: the per-tensor scale comes from the whole 16-bit
    # weight before the sweep, as `encode` takes it; None everywhere else.
    tensor_scale: float | None = None

    @property
    def name(self) -> str:
        return "nvfp4"

    @property
    def element_bits(self) -> float:
        return 4.0

    @property
    def layout(self) -> str:
        return f"E4M3 scale per {BLOCK} along K + fp32 per tensor"

    @staticmethod
    def _scales(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(tensor scale g, block scales s on the E4M3 grid, shape (R, nb, 1)), float32."""
        amax = absmax(blocks)
        g = div(amax.amax(), E2M1.max * E4M3.max)
        g = torch.where(g > 0, g, torch.ones_like(g))
        return g, E4M3.round(div(amax, E2M1.max) / g)

    @staticmethod
    def _elements(blocks: torch.Tensor, g: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        eff = s * g
        p = E2M1.round(blocks / torch.where(eff > 0, eff, torch.ones_like(eff)))
        return torch.where(eff > 0, p, torch.zeros_like(p))

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        blocks = BLOCKS.blocks(x.float())
        g, s = self._scales(blocks)
        return BLOCKS.unblock(self._elements(blocks, g, s).mul_(s).mul_(g), x.shape).to(x.dtype)

    def encode(self, x: torch.Tensor) -> Encoded:
        blocks = BLOCKS.blocks(x.float())
        g, s = self._scales(blocks)
        codes = E2M1.encode(as_rows(BLOCKS.unblock(self._elements(blocks, g, s), x.shape)))
        scales = {"scale": E4M3.encode(s.reshape(-1)).to(torch.uint8), "tensor_scale": g.reshape(1)}
        return Encoded(codes, 4, scales)

    def decode(self, enc: Encoded, shape: tuple[int, ...]) -> torch.Tensor:
        blocks = BLOCKS.blocks(E2M1.decode(enc.codes).reshape(shape))
        s = E4M3.decode(enc.scales["scale"]).reshape(blocks.shape[:-1] + (1,))
        return BLOCKS.unblock(blocks.mul(s).mul_(enc.scales["tensor_scale"].float()), shape)

    def storage_bits(self, shape: tuple[int, ...]) -> int:
        return math.prod(shape) * 4 + BLOCKS.count(shape) * 8 + TENSOR_SCALE_BITS

    # -- a fixed grid, for error-feedback rounding (mpsearch.rounding: GPTQ) ------------------------
    granularity = "g"  # one E4M3 scale per BLOCK along K, fixed when GPTQ's sweep reaches the block
    group = BLOCK

    def grid_bind(self, rows: torch.Tensor) -> NVFP4Format:
        """This format with the per-tensor scale of the weight `rows` (R, K) fixed."""
        g, _ = self._scales(BLOCKS.blocks(rows.float()))
        return replace(self, tensor_scale=float(g))

    def _g(self) -> torch.Tensor:
        if self.tensor_scale is None:
            raise RuntimeError("nvfp4 grid used before grid_bind fixed its tensor scale")
        return torch.tensor(self.tensor_scale, dtype=torch.float32)

    def grid_params(self, rows: torch.Tensor) -> torch.Tensor:
        """Block scale (R,) on the E4M3 grid of `rows` (R, n) taken as one block per row."""
        return E4M3.round(div(absmax(rows.float().unsqueeze(1)), E2M1.max) / self._g()).reshape(-1)

    def grid_levels(self, col: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return self._elements(col.float(), self._g(), grid).to(col.dtype)

    def grid_values(self, q: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        return (q.float() * grid * self._g()).to(q.dtype)

    def grid_encode(self, codes: torch.Tensor, grids: list) -> Encoded:
        s = torch.stack(grids, dim=-1).reshape(-1)  # (row, block) order, as `encode`
        scales = {"scale": E4M3.encode(s).to(torch.uint8), "tensor_scale": self._g().reshape(1)}
        return Encoded(E2M1.encode(codes.float()), 4, scales)


@register_family
class NVFP4Family(FormatFamily):
    name = "nvfp4"
    pattern = re.compile("(nvfp4)")

    def build(self, m: re.Match[str]) -> Format:
        return NVFP4Format()

    def catalogue(self) -> list[str]:
        return ["nvfp4"]
