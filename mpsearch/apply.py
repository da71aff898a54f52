"""Realize a plan: simulated quantization (quantize -> dequantize) of each site's weight, and
fake-quantization of each site's input where the plan's choice has an activation format."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from .activations import ActParams, act_functions, insert, plan_params
from .data import CalibrationData
from .errors import ModelMismatch
from .formats import get_choice
from .model import fingerprint
from .plan import Plan


def _check(model: nn.Module, plan: Plan) -> None:
    fp = fingerprint(model)
    if fp != plan.fingerprint:
        params = dict(model.named_parameters())
        missing = [s for s in plan.assignments if f"{s}.weight" not in params and s not in params]
        why = f"it has no site {missing[0]!r}" if missing else "its weights differ"
        raise ModelMismatch(
            f"this plan was made for another model ({why}: plan {plan.fingerprint[:19]}…, model {fp[:19]}…); "
            "make a plan for this model with `mpsearch plan`"
        )


def _param(model: nn.Module, site: str) -> torch.Tensor:
    try:
        return model.get_parameter(f"{site}.weight")
    except AttributeError:
        return model.get_parameter(site)


def quantize_weights_(model: nn.Module, assignments: dict[str, str]) -> nn.Module:
    """In place: replace each named site's weight by its simulated-quantized value."""
    with torch.no_grad():
        for site, name in assignments.items():
            p = _param(model, site)
            p.copy_(get_choice(name).weight.quantize(p.detach()))
    return model


@contextmanager
def quantized(model: nn.Module, assignments: dict[str, str], acts: ActParams | None = None,
              data: CalibrationData | None = None):
    """Temporarily quantize `model` in place (cheaper than a copy when measuring many plans).

    For `WEIGHT:ACT` choices the site inputs are fake-quantized too, with the per-tensor parameters
    in `acts` (from `activations.calibrate_choices`); missing ones are calibrated on `data`.
    """
    fns = act_functions(model, assignments, acts or {}, data)
    saved = {s: _param(model, s).detach().clone() for s in assignments}
    remove = insert(model, fns)
    try:
        yield quantize_weights_(model, assignments)
    finally:
        remove()
        with torch.no_grad():
            for s, w in saved.items():
                _param(model, s).copy_(w)


def apply(model: nn.Module, plan: Plan | str | Path, *, inplace: bool = False) -> nn.Module:
    """A model whose weights (and, for `WEIGHT:ACT` choices, site inputs) are quantized per `plan`.
    Refuses a plan made for another model. Activation scales come from the plan: no data needed."""
    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    _check(model, plan)
    out = model if inplace else copy.deepcopy(model)
    insert(out, act_functions(out, plan.assignments, plan_params(plan.sites)))
    return quantize_weights_(out, plan.assignments)
