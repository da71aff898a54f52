"""GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers", Algorithm 1): quantize the columns of W one at a time and spread each column's error
over the columns not yet quantized, weighted by the inverse Hessian H⁻¹ of the layer's reconstruction
loss ‖WX − ŴX‖² (H = 2XXᵀ/n over the calibration inputs).

Per column q: err = (w_q − quant(w_q)) / [H⁻¹]_qq, then W[:, q+1:] −= err·[H⁻¹]_{q, q+1:} and q is
removed from H⁻¹ (eq. 3). As in the paper, H⁻¹ is factored once as the upper Cholesky factor of
(H + λI)⁻¹ (its rows are the successive H⁻¹ after each removal, up to scale), λ = damp·mean(diag H);
updates are applied lazily in blocks of `block` columns. Dead inputs (diag H = 0) get weight 0.
A group's grid (scale, zero-point) is fixed from the error-updated weights when the sweep reaches the
group's first column (the reference implementation's `groupsize` mode); per-channel and per-tensor
grids are fixed from W before the sweep.

`act_order=True` (the reference's `--act-order --static-groups`): the columns are swept in order of
decreasing diag H (the inputs with the most energy first, while the most columns are left to absorb
their error), with every group's grid fixed beforehand from W (its contiguous groups along K, so the
stored layout, codes and scales are exactly those of the format: no column permutation ships).
"""

from __future__ import annotations

import torch

from ..formats import Encoded
from ..formats._base import as_rows

DAMP = 0.01
BLOCK = 128


def inverse_hessian_factor(h: torch.Tensor, damp: float = DAMP) -> tuple[torch.Tensor, torch.Tensor]:
    """(upper Cholesky factor of (H + λI)⁻¹, dead-input mask)."""
    h = h.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    h += damp * torch.mean(torch.diag(h)) * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    h = (h + h.T) / 2
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    inv = torch.cholesky_solve(eye, torch.linalg.cholesky(h))  # cholesky_inverse is ~10x slower on CPU
    return torch.linalg.cholesky(inv, upper=True), dead


def gptq_factor(h: torch.Tensor, damp: float = DAMP, act_order: bool = False):
    """What `gptq_encode` needs from H, the same for every format of one site: (sweep order, None for
    column order; the upper Cholesky factor of (H + λI)⁻¹ in that order; dead-input mask)."""
    if not act_order:
        return (None, *inverse_hessian_factor(h, damp))
    perm = torch.argsort(torch.diag(h), descending=True, stable=True)
    hinv, _ = inverse_hessian_factor(h[perm][:, perm], damp)
    return perm, hinv, torch.diag(h) == 0


def _column(fmt, w1: torch.Tensor, err1: torch.Tensor, h1: torch.Tensor, i: int, grid) -> torch.Tensor:
    """GPTQ's step for column i of the lazy block w1 (eq. 3): its codes on `grid`, and its error spread over
    the block's later columns (err1 keeps it for the update of the columns after the block)."""
    q = fmt.grid_levels(w1[:, i], grid)
    err = (w1[:, i] - fmt.grid_values(q, grid)) / h1[i, i]
    w1[:, i:] -= err.unsqueeze(1) * h1[i, i:].unsqueeze(0)
    err1[:, i] = err
    return q


def gptq_encode(fmt, weight: torch.Tensor, h: torch.Tensor, *, damp: float = DAMP, block: int = BLOCK,
                dtype: torch.dtype = torch.float32, factor=None, act_order: bool = False) -> Encoded:
    """The stored form of `weight` rounded by GPTQ onto `fmt`'s grid (`fmt` must offer `grid_params`);
    `factor`: `gptq_factor(h, damp, act_order)`, when the caller keeps it for several formats."""
    factor = factor if factor is not None else gptq_factor(h, damp, act_order)
    if act_order:
        return _gptq_act_order(fmt, weight, factor, block=block, dtype=dtype)
    w = as_rows(weight.detach()).to(dtype).clone()
    r, k = w.shape
    _, hinv, dead = factor
    hinv = hinv.to(dtype)
    w[:, dead] = 0
    if hasattr(fmt, "grid_bind"):  # a per-tensor scale (NVFP4) is fixed from the 16-bit weight, as encode does
        fmt = fmt.grid_bind(as_rows(weight.detach()))
    span = k if fmt.granularity in ("pc", "pt") else fmt.group  # columns sharing one grid
    grids = []
    codes = torch.zeros_like(w)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if col % span == 0:  # the group's grid, from the weights with every earlier update applied
                tail = w[:, i2:col + span]
                if tail.numel():
                    tail = tail - err1[:, :i] @ hinv[i1:col, i2:col + span]
                cur = torch.cat([w1[:, i:], tail], dim=1)[:, :span]
                grids.append(fmt.grid_params(cur))
            codes[:, col] = _column(fmt, w1, err1, h1, i, grids[-1])
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return fmt.grid_encode(codes, grids)


def _gptq_act_order(fmt, weight: torch.Tensor, factor, *, block: int, dtype: torch.dtype) -> Encoded:
    """GPTQ over the columns in decreasing diag H order, grids fixed from W per contiguous group."""
    perm, hinv, dead = factor
    w0 = as_rows(weight.detach()).to(dtype)
    r, k = w0.shape
    w0 = w0.clone()
    w0[:, dead] = 0
    if hasattr(fmt, "grid_bind"):
        fmt = fmt.grid_bind(as_rows(weight.detach()))
    span = k if fmt.granularity in ("pc", "pt") else fmt.group
    grids = [fmt.grid_params(w0[:, g:g + span]) for g in range(0, k, span)]
    hinv = hinv.to(dtype)
    w = w0[:, perm].clone()
    group_of = (perm // span).tolist()
    codes = torch.zeros_like(w0)
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1 = w[:, i1:i2].clone()
        err1 = torch.zeros_like(w1)
        h1 = hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            codes[:, perm[i1 + i]] = _column(fmt, w1, err1, h1, i, grids[group_of[i1 + i]])
        w[:, i2:] -= err1 @ hinv[i1:i2, i2:]
    return fmt.grid_encode(codes, grids)
