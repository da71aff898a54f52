"""Bit packing: n codes of b bits each in ceil(n·b/8) bytes, little-endian bit order.

Code i occupies bits [i·b, (i+1)·b) of the stream, counting from bit 0 of byte 0. For b = 4 that
is nibble packing with the first code in the low nibble (the layout of torch.float4_e2m1fn_x2);
for b = 6, four codes fill three bytes. Vectorized: lcm(b, 8)/b codes form one int64 word, so
b is 1-8, 16, 24 or 32.
"""

from __future__ import annotations

import math

import torch


def _word(bits: int) -> tuple[int, int]:
    """(codes per word, bytes per word)."""
    span = math.lcm(bits, 8)
    return span // bits, span // 8


def packed_size(n: int, bits: int) -> int:
    return math.ceil(n * bits / 8)


def pack_bits(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Integer codes (each in [0, 2^bits)) -> uint8 tensor of `packed_size(codes.numel(), bits)` bytes."""
    if not 1 <= bits <= 32 or math.lcm(bits, 8) > 56:
        raise ValueError(f"cannot pack {bits}-bit codes (1-8, 16, 24 or 32 bits fit one int64 word)")
    c = codes.reshape(-1).to(torch.int64).cpu()
    n = c.numel()
    per, nbytes = _word(bits)
    c = torch.nn.functional.pad(c, (0, (-n) % per)).reshape(-1, per)
    shifts = torch.arange(per, dtype=torch.int64) * bits
    words = (c << shifts).sum(dim=1, keepdim=True)
    out = (words >> (torch.arange(nbytes, dtype=torch.int64) * 8)) & 0xFF
    return out.reshape(-1)[: packed_size(n, bits)].to(torch.uint8)


def unpack_bits(data: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """Inverse of `pack_bits`: the first `n` codes as int64."""
    per, nbytes = _word(bits)
    b = data.reshape(-1).to(torch.int64)
    b = torch.nn.functional.pad(b, (0, (-b.numel()) % nbytes)).reshape(-1, nbytes)
    words = (b << (torch.arange(nbytes, dtype=torch.int64) * 8)).sum(dim=1, keepdim=True)
    codes = (words >> (torch.arange(per, dtype=torch.int64) * bits)) & (2**bits - 1)
    return codes.reshape(-1)[:n]
