"""Realize a plan: simulated quantization (quantize -> dequantize) of each site's weight, and
fake-quantization of each site's input where the plan's choice has an activation format."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

from torch import nn

from .activations import act_functions, insert, plan_params
from .errors import ModelMismatch, PlanError
from .model import fingerprint
from .plan import Plan
from .quantize import _param, quantize_weights_, quantized  # noqa: F401  (re-exported: measuring code imports them here)
from .rounding import rounding_for


def _check(model: nn.Module, plan: Plan) -> None:
    """The plan binds to these weights and names exactly this model's sites."""
    from .model import sites
    from .validate import check_plan_sites

    fp = fingerprint(model)
    if fp != plan.fingerprint:
        params = dict(model.named_parameters())
        missing = [s for s in plan.assignments if f"{s}.weight" not in params and s not in params]
        why = f"it has no site {missing[0]!r}" if missing else "its weights differ"
        raise ModelMismatch(
            f"this plan was made for another model ({why}: plan {plan.fingerprint[:19]}…, model {fp[:19]}…); "
            "make a plan for this model with `mpsearch plan`"
        )
    unreached = set(plan.provenance.get("unexecuted_sites", []))  # the plan's example input never ran them
    check_plan_sites(plan, [s.name for s in sites(model) if s.name not in unreached or s.name in plan.assignments])


def _copy(model: nn.Module) -> nn.Module:
    with warnings.catch_warnings():  # copying an unlifted .pt2 trips torch's own LeafSpec deprecation
        warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated", category=FutureWarning)
        return copy.deepcopy(model)


def plan_rounding(plan: Plan, model: nn.Module, data):
    """The rounding context `plan` was made with (`provenance.rounding`), for `model`; GPTQ needs the
    calibration data it was planned on."""
    name = plan.provenance.get("rounding", "rtn")
    if name != "rtn" and data is None:
        raise PlanError(f"this plan rounds weights with {name}, which needs the calibration data it was made "
                        "with; pass data= (CLI: --data FILE or --example)")
    return rounding_for(model, name, data, **plan.provenance.get("rounding_settings", {}))


def apply(model: nn.Module, plan: Plan | str | Path, *, inplace: bool = False, data=None) -> nn.Module:
    """A model whose weights (and, for `WEIGHT:ACT` choices, site inputs) are quantized per `plan`.
    Refuses a plan made for another model. Activation scales come from the plan; `data` is needed
    only for a plan whose rounding uses calibration statistics (GPTQ)."""
    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    _check(model, plan)
    out = model if inplace else _copy(model)
    with plan_rounding(plan, out, data):  # statistics from the 16-bit model, before any fake-quantization
        insert(out, act_functions(out, plan.assignments, plan_params(plan.sites)))
        return quantize_weights_(out, plan.assignments)
