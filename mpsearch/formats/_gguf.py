"""GGUF block types (llama.cpp) as mpsearch formats: `q4_0`, `q4_1`, `q5_0`, `q5_1`, `q8_0`.

Each quantizes rows (rows = output channels, K along the row, as every format here) in blocks of 32
with the block's own FP16 scale (and FP16 minimum for the `_1` types): Q4_0 4.5, Q4_1 5.0, Q5_0 5.5,
Q5_1 6.0, Q8_0 8.5 bits per weight (`gguf.GGML_QUANT_SIZES`). The arithmetic is gguf-py's own
(`gguf.quants.quantize/dequantize`, the numpy port of ggml's reference quantizers), so the simulated
weights are what llama.cpp decodes from a file `mpsearch export --target llama.cpp` writes. A row whose
length is not a multiple of 32 is zero-padded here (llama.cpp would refuse it; the llama.cpp profile
excludes such sites). The stored form is the raw GGUF block bytes (`code_bits` 8, no separate scales).
Needs the `gguf` package (`pip install mpsearch[deploy]`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import FormatError
from ._base import Encoded, Format, FormatFamily, as_rows, register_family

TYPES = {"q4_0": 4, "q4_1": 4, "q5_0": 5, "q5_1": 5, "q8_0": 8}  # name -> element bits
BLOCK = 32


def _gguf():
    try:
        import gguf
    except ImportError:
        raise FormatError("GGUF formats need the gguf package; pip install 'mpsearch[deploy]'") from None
    return gguf


@dataclass(frozen=True)
class GGUFFormat(Format):
    kind: str = "q8_0"
    family = "gguf"
    block = BLOCK

    @property
    def name(self) -> str:
        return self.kind

    @property
    def element_bits(self) -> float:
        return float(TYPES[self.kind])

    @property
    def qtype(self):
        return _gguf().GGMLQuantizationType[self.kind.upper()]

    @property
    def block_bytes(self) -> int:
        return _gguf().GGML_QUANT_SIZES[self.qtype][1]

    @property
    def layout(self) -> str:
        return f"GGUF {self.kind.upper()}: {self.block_bytes} bytes per block of {BLOCK} (scale inside)"

    def _padded(self, x: torch.Tensor) -> np.ndarray:
        rows = as_rows(x.detach().float().cpu())
        pad = (-rows.shape[1]) % BLOCK
        return torch.nn.functional.pad(rows, (0, pad)).numpy() if pad else rows.numpy()

    def _decode_rows(self, raw: np.ndarray, shape) -> torch.Tensor:
        vals = _gguf().quants.dequantize(raw, self.qtype)
        rows = as_rows(torch.empty(shape, device="meta"))
        return torch.from_numpy(np.ascontiguousarray(vals[:, : rows.shape[1]])).reshape(shape)

    def encode(self, x: torch.Tensor) -> Encoded:
        raw = _gguf().quants.quantize(self._padded(x), self.qtype)
        return Encoded(torch.from_numpy(raw.astype(np.int64)), 8)

    def decode(self, enc: Encoded, shape: tuple[int, ...]) -> torch.Tensor:
        return self._decode_rows(enc.codes.numpy().astype(np.uint8), shape)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        raw = _gguf().quants.quantize(self._padded(x), self.qtype)
        return self._decode_rows(raw, x.shape).to(x.dtype)

    def storage_bits(self, shape: tuple[int, ...]) -> int:
        rows = as_rows(torch.empty(shape, device="meta"))
        return rows.shape[0] * (-(-rows.shape[1] // BLOCK)) * self.block_bytes * 8


@register_family
class GGUFFamily(FormatFamily):
    name = "gguf"
    pattern = re.compile(r"(" + "|".join(TYPES) + r")")

    def build(self, m: re.Match[str]) -> Format:
        return GGUFFormat(m.group(1))

    def catalogue(self) -> list[str]:
        return list(TYPES)
