"""AWQ (Lin et al. 2024, "AWQ: Activation-aware Weight Quantization for LLM Compression and
Acceleration", §3.2): scale each input channel of W up before quantizing it and the input down by
the same factor, so the channels that see large activations lose less to rounding.

Per site, s = s̄ / √(max s̄ · min s̄) with s̄ = max(mean|x|, 1e-4)^α (mean over the calibration rows of
the site's input, 16-bit model), α searched over {0, 1/20, …, 19/20} (the paper's grid); the α kept
minimizes the layer-output error on the calibration inputs, ‖(Ŵ − W)X‖² = tr(ΔW H ΔWᵀ) with
H = 2XᵀX/n, where Ŵ = Q(W·diag(s))·diag(1/s). α = 0 is s = 1, round-to-nearest, so AWQ's error
is never above RTN's on the calibration data.

Shipped form: the codes and scales of Q(W·diag(s)) in the site's own format, plus s itself as one
FP16 vector per input channel (`awq_in`, 16 bits per column, counted in the stored bits; absent when
α = 0 wins); the runtime
divides the input by s, or folds 1/s into the op before (a norm's weight, the previous linear's rows)
when it can. s is rounded to FP16 before it is used, so what is scored is what is stored.
`inner="gptq"` (`awq+gptq`) rounds W·diag(s) by GPTQ with the scaled inputs' Hessian
diag(1/s)·H·diag(1/s) instead of to nearest, the combination AutoAWQ/llm-compressor users stack.
"""

from __future__ import annotations

import torch

from ..formats import ROWS, Encoded, WeightLayout
from ..formats._base import as_rows

GRID = 20
KEY = "awq_in"  # the FP16 per-input-channel scale in Encoded.scales and in packed files


def awq_scales(xabs: torch.Tensor, alpha: float) -> torch.Tensor:
    """The paper's scale for one α, normalized so max·min = 1, rounded to FP16 (its stored form)."""
    s = xabs.double().clamp(min=1e-4).pow(alpha)
    s = s / (s.max() * s.min()).sqrt()
    return s.to(torch.float16)


def decode(fmt, enc: Encoded, shape: tuple[int, ...], layout: WeightLayout = ROWS) -> torch.Tensor:
    """Ŵ from a stored form that may carry AWQ's `awq_in` (then Q(W·diag(s))·diag(1/s)); AWQ scales only
    Linear sites (`rows`), so any other layout has no `awq_in`."""
    if KEY not in enc.scales:
        return layout.decode(fmt, enc, shape)
    s = enc.scales[KEY].float()
    inner = Encoded(enc.codes, enc.code_bits, {k: v for k, v in enc.scales.items() if k != KEY}, enc.zeros)
    w = as_rows(fmt.decode(inner, shape).float()) / s
    return w.reshape(shape)


def output_error(dw: torch.Tensor, h: torch.Tensor) -> float:
    """tr(ΔW H ΔWᵀ): the layer-output squared error on the calibration inputs (up to 2/n)."""
    dw = dw.double()
    return float(((dw @ h) * dw).sum())


def awq_encode(fmt, weight: torch.Tensor, h: torch.Tensor, xabs: torch.Tensor, *, grid: int = GRID,
               inner=None) -> Encoded:
    """The stored form of `weight` on `fmt` with the best AWQ scale (`inner(fmt, w, h)` rounds the
    scaled weight; default round-to-nearest)."""
    shape = tuple(weight.shape)
    w = as_rows(weight.detach()).float()
    h = h.to(torch.float64)
    best = None
    for i in range(grid):
        s = awq_scales(xabs, i / grid)
        sf = s.float()
        scaled = (w * sf).reshape(shape)
        enc = fmt.encode(scaled) if inner is None else inner(fmt, scaled, h / sf.double()[:, None]
                                                              / sf.double()[None, :])
        if i:  # α = 0 is s = 1: plain RTN/GPTQ, nothing extra to store
            enc = Encoded(enc.codes, enc.code_bits, {**enc.scales, KEY: s}, enc.zeros)
        err = output_error(as_rows(decode(fmt, enc, shape)) - w, h)
        if best is None or err < best[0]:
            best = (err, enc)
    return best[1]
