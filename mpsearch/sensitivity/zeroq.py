"""ZeroQ distilled data: inputs whose BatchNorm batch statistics match the running statistics.

Starting from x ~ N(0, 1) in the model's input shape, Adam minimizes
Σ_BN (‖μ̃ − μ‖² + ‖σ̃ − σ‖²) / C over each BatchNorm's input (Cai et al. 2020, "ZeroQ", eq. 2), so a
model can be planned with no real data: the distilled inputs carry no labels, the default objective
becomes KL to the FP outputs, and the measured estimator gives ZeroQ's KL sensitivity.
"""

from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import CalibrationData, as_data
from ..errors import DataError
from ..model import eval_mode

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def distill(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    num_samples: int = 128,
    steps: int = 300,
    lr: float = 0.2,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool | None = None,
) -> CalibrationData:
    """`num_samples` distilled inputs of per-sample shape `input_shape` (e.g. (1, 8, 8))."""
    bns = [
        m
        for m in model.modules()
        if isinstance(m, _BN) and m.track_running_stats and m.running_mean is not None
    ]
    if not bns:
        raise DataError(
            f"{type(model).__name__} has no BatchNorm layer with running statistics, so ZeroQ "
            "cannot distill data for it; pass real calibration inputs with --data FILE"
        )
    dev = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((num_samples, *input_shape), generator=gen).to(dev).requires_grad_(True)
    stats: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []

    def hook(module, args):
        a = args[0].float().transpose(0, 1).reshape(args[0].shape[1], -1)
        stats.append((module, a.mean(1), (a.var(1, unbiased=False) + module.eps).sqrt()))

    handles = [m.register_forward_pre_hook(hook) for m in bns]
    with eval_mode(model):
        opt = torch.optim.Adam([x], lr=lr)
        bar = tqdm(
            range(steps),
            desc="zeroq distill",
            unit="step",
            leave=False,
            disable=None if progress is None else not progress,
        )
        try:
            for _ in bar:
                stats.clear()
                model(x)
                loss = sum(
                    ((mu - m.running_mean).pow(2).sum() + (sd - (m.running_var + m.eps).sqrt()).pow(2).sum())
                    / m.num_features
                    for m, mu, sd in stats
                )
                opt.zero_grad()
                (g,) = torch.autograd.grad(loss, [x])
                x.grad = g
                opt.step()
        finally:
            for h in handles:
                h.remove()
            bar.close()
    out = as_data(x.detach(), batch_size)
    out.distilled = True
    return out


def input_shape_of(x) -> tuple[int, ...]:
    """Per-sample shape of a tensor of example inputs."""
    if not isinstance(x, torch.Tensor):
        raise DataError("ZeroQ distills tensor inputs only; this model takes a dict or tuple of inputs")
    return tuple(x.shape[1:])


def is_zeroq(spec) -> bool:
    return isinstance(spec, str) and (spec == "zeroq" or spec.startswith("zeroq:"))


def from_spec(model: nn.Module, spec: str, example_x=None, batch_size: int = 256) -> CalibrationData:
    """`zeroq` (input shape from `example_x`) or `zeroq:3x32x32` -> distilled calibration data."""
    _, _, shape = spec.partition(":")
    if shape:
        try:
            dims = tuple(int(d) for d in shape.lower().replace(",", "x").split("x"))
        except ValueError:
            raise DataError(f"cannot read the input shape in {spec!r}; write e.g. zeroq:3x32x32") from None
    elif example_x is not None:
        dims = input_shape_of(torch.as_tensor(example_x))
    else:
        raise DataError(
            "zeroq needs the model's per-sample input shape: pass --data zeroq:CxHxW, e.g. zeroq:3x32x32"
        )
    return distill(model, dims, batch_size=batch_size)
