"""Scales shared by the integer and scaled-minifloat formats: the stored FP16 scale and the clip.

The clip `c` of a block is the magnitude mapped to the largest code; the scale is c / qmax stored
as FP16. Clip methods (the name suffix that selects them):

- absmax (no suffix): c = max|x|.
- `_mse`: c = α·max|x| for α on a grid 1.00, 0.99, …, 0.41 (60 points), the α with the smallest
  squared quantization error of the block (ties: the larger clip).
- `_octav`: OCTAV's fixed point (Sakr et al. 2022, eq. 8),
  c ← E[|x|·1{|x|>c}] / ((4^-b / 3)·E[1{|x|≤c}] + E[1{|x|>c}]), 30 iterations from c = max|x|/2.
- `_p{P}`: c = the P-th percentile of |x| in the block, 0 < P ≤ 100 (`_p99.9`: 99.9th percentile,
  `_p50`: the median), mostly for activations. The older digits-only spelling of a tail percentile
  stays valid where it cannot be misread: `_p999` = `_p99.9`, `_p9999` = `_p99.99` (digits starting
  with 99, read as 99.…). Any other number above 100 (`_p1000`) is refused with the new spelling.

"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..errors import FormatError

FP16_MAX = 65504.0
MSE_GRID = [1 - i / 100 for i in range(60)]
OCTAV_ITERS = 30
CLIP_PATTERN = r"(?:_(mse|octav|p\d+(?:\.\d+)?))?"
ErrorFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (blocks, clip) -> squared error per block


def clip_name(method: str) -> str:
    """The name suffix for a clip method ('' for absmax)."""
    return "" if method == "absmax" else f"_{method}"


def div(a: torch.Tensor, b: float) -> torch.Tensor:
    """a / b, correctly rounded on every device. CUDA divides a tensor by a CPU scalar as a multiply by
    the reciprocal (1 ulp off unless b is a power of two), so a scale computed on the GPU could land on
    the other side of an FP16 or E4M3 rounding boundary than on the CPU; a device tensor divisor keeps
    the division exact and the formats bit-identical across devices."""
    return a / torch.full((), b, dtype=a.dtype, device=a.device)


def fp16_scale(clip: torch.Tensor, qmax: float) -> torch.Tensor:
    """The stored FP16 scale, as float32: the smallest FP16 value ≥ clip/qmax, so that rounding the
    scale never pushes an element past the largest code; 1 for an all-zero block."""
    s = div(clip.float(), qmax).clamp_(max=FP16_MAX)
    h = s.to(torch.float16)
    up = (h.view(torch.int16) + 1).view(torch.float16)  # next FP16 above a non-negative finite h
    out = torch.where(h.float() < s, up, h).float()
    return torch.where(out > 0, out, torch.ones_like(out))


def absmax(blocks: torch.Tensor) -> torch.Tensor:
    """max |x| over the last dim, keepdim; from one min/max pass (no |x| temporary: 1 read, no write)."""
    lo, hi = torch.aminmax(blocks, dim=-1, keepdim=True)
    return torch.maximum(hi, -lo)


def quantile_of(method: str) -> float:
    """The quantile in (0, 1] that a `p{P}` clip method names (see the module docstring)."""
    text = method[1:]
    p = float(text)
    if p > 100 and text.isdigit() and text.startswith("99"):
        p = float("99." + text[2:])
    if not 0 < p <= 100:
        hint = f"_p{text[:2]}.{text[2:]}" if text.isdigit() and len(text) > 2 else "_p99.9"
        raise FormatError(f"clip _p{text}: the percentile must be in (0, 100]; write e.g. {hint} "
                          "for a tail percentile or _p50 for the median")
    return p / 100


def _quantile(a: torch.Tensor, method: str) -> torch.Tensor:
    q = quantile_of(method)
    n = a.shape[-1]
    k = min(max(math.ceil(round(q * n, 9)), 1), n)
    return torch.kthvalue(a, k, dim=-1, keepdim=True).values


def _octav(a: torch.Tensor, bits: int) -> torch.Tensor:
    amax = a.amax(dim=-1, keepdim=True)
    c = amax / 2
    noise = 4.0**-bits / 3
    for _ in range(OCTAV_ITERS):
        over = (a > c).float()
        num = (a * over).mean(dim=-1, keepdim=True)
        den = noise * (1 - over).mean(dim=-1, keepdim=True) + over.mean(dim=-1, keepdim=True)
        c = torch.where(den > 0, num / den, amax)
    return torch.minimum(c, amax)


def best_by_error(blocks: torch.Tensor, candidates: list[torch.Tensor], error: ErrorFn) -> torch.Tensor:
    """Per block, the candidate with the smallest `error(blocks, candidate)` (the first on ties)."""
    best, best_err = candidates[0], error(blocks, candidates[0])
    for cand in candidates[1:]:
        err = error(blocks, cand)
        better = err < best_err
        best = torch.where(better, cand, best)
        best_err = torch.where(better, err, best_err)
    return best


def symmetric_clip(blocks: torch.Tensor, method: str, bits: int | None, error: ErrorFn) -> torch.Tensor:
    """Per-block clip (shape (..., 1)) of `blocks` (..., n). `error(blocks, clip)` is the squared
    quantization error per block at that clip (used by `mse`); `bits` drives OCTAV's noise term."""
    if method == "absmax":
        return absmax(blocks)
    a = blocks.abs()
    if method == "mse":
        amax = a.amax(dim=-1, keepdim=True)
        return best_by_error(blocks, [amax * alpha for alpha in MSE_GRID], error)
    if method == "octav":
        if bits is None:
            raise FormatError("OCTAV clipping is defined for integer formats; use _mse for this format")
        return _octav(a, bits)
    return _quantile(a, method)


def asymmetric_range(blocks: torch.Tensor, method: str, error: ErrorFn) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-block (lo, hi) with lo ≤ 0 ≤ hi. `error(blocks, stacked)` scores `torch.stack([lo, hi])`."""
    zero = torch.zeros((), dtype=blocks.dtype, device=blocks.device)
    if method == "absmax" or method == "mse":
        lo = torch.minimum(blocks.amin(dim=-1, keepdim=True), zero)
        hi = torch.maximum(blocks.amax(dim=-1, keepdim=True), zero)
        if method == "absmax":
            return lo, hi
        best = best_by_error(blocks, [torch.stack([lo * a, hi * a]) for a in MSE_GRID], error)
        return best[0], best[1]
    if method == "octav":
        raise FormatError("OCTAV clipping is defined for symmetric formats; use _mse with _asym")
    q = quantile_of(method)
    n = blocks.shape[-1]
    k_hi = min(max(math.ceil(round(q * n, 9)), 1), n)
    k_lo = min(max(n + 1 - k_hi, 1), n)
    hi = torch.kthvalue(blocks, k_hi, dim=-1, keepdim=True).values
    lo = torch.kthvalue(blocks, k_lo, dim=-1, keepdim=True).values
    return torch.minimum(lo, zero), torch.maximum(hi, zero)
