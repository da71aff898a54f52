"""Simulated quantization in place: the weights (and fake-quantized inputs) of a set of sites, for as
long as a measurement takes. Below the estimators and plans, so both can measure a quantized model."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import contextmanager

import torch
from torch import nn

from .activations import ActParams, act_functions, insert
from .data import CalibrationData
from .formats import ROWS, WeightLayout, get_choice
from .model import site_layouts
from .rounding import rounded


def _param(model: nn.Module, site: str) -> torch.Tensor:
    try:
        return model.get_parameter(f"{site}.weight")
    except AttributeError:
        return model.get_parameter(site)


def quantize_weights_(model: nn.Module, assignments: dict[str, str],
                      layouts: Mapping[str, WeightLayout] | None = None) -> nn.Module:
    """In place: replace each named site's weight by its simulated-quantized value (rounded by the
    active `mpsearch.rounding`, round-to-nearest by default). `layouts`: site -> `Site.layout`; by
    default from the model's sites (`model.site_layouts`), so a MoE experts weight is read as experts."""
    if layouts is None:
        layouts = site_layouts(model)
    with torch.no_grad():
        for site, name in assignments.items():
            p = _param(model, site)
            p.copy_(rounded(p, get_choice(name).weight, layouts.get(site, ROWS)))
    return model


@contextmanager
def quantized(model: nn.Module, assignments: dict[str, str], acts: ActParams | None = None,
              data: CalibrationData | None = None, layouts: Mapping[str, WeightLayout] | None = None):
    """Temporarily quantize `model` in place (cheaper than a copy when measuring many plans).

    For `WEIGHT:ACT` choices the site inputs are fake-quantized too, with the per-tensor parameters
    in `acts` (from `activations.calibrate_choices`); missing ones are calibrated on `data`.
    """
    fns = act_functions(model, assignments, acts or {}, data)
    # the 16-bit weights to restore are kept in host memory: on an accelerator the model is what fills it
    # (an 8B model's copy would double its 16 GB while each uniform plan of the guard is measured)
    saved = {s: _param(model, s).detach().to("cpu", copy=True) for s in assignments}
    remove = insert(model, fns)
    try:
        yield quantize_weights_(model, assignments, layouts)
    finally:
        remove()
        with torch.no_grad():
            for s, w in saved.items():
                _param(model, s).copy_(w)


def sixteen_bit(t: torch.Tensor) -> torch.Tensor:
    """A non-site parameter as stored at 16 bits: fp16, or bf16 where fp16 would overflow a finite value."""
    h = t.detach().to(torch.float16)
    if torch.isfinite(t).all() and not torch.isfinite(h).all():
        return t.detach().to(torch.bfloat16)
    return h
