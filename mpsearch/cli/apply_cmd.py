"""`mpsearch apply`: write the model quantized per a plan, in the form it was loaded from."""

from __future__ import annotations

import argparse

from ..activations import plan_params
from ..apply import apply
from ..loading import save_model
from ._common import add_plan_args, info, model_and_plan
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    add_plan_args(p, "where to write the quantized model")


@command("apply", "quantize a model per a plan (simulated: quantize -> dequantize)", arguments)
def run(args: argparse.Namespace) -> int:
    inp, plan = model_and_plan(args)
    q = apply(inp.model, plan, data=inp.data)
    out = save_model(inp.loaded, q, args.output)
    info(f"wrote {out} ({len(plan.assignments)} sites quantized)")
    if inp.loaded.kind in ("factory", "example") and plan_params(plan.sites):
        info("note: a state dict carries weights only; the activation scales stay in the plan "
             "(mpsearch.apply(model, plan) installs them)")
    return 0

