"""`mpsearch apply`: write the model quantized per a plan, in the form it was loaded from."""

from __future__ import annotations

import argparse

from ..apply import apply
from ..loading import save_model
from ..plan import Plan
from ._common import Inputs, add_model_args, info
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=False)
    p.add_argument("plan", metavar="PLAN", help="plan JSON from `mpsearch plan`")
    p.add_argument("-o", "--output", required=True, help="where to write the quantized model")


@command("apply", "quantize a model per a plan (simulated: quantize -> dequantize)", arguments)
def run(args: argparse.Namespace) -> int:
    plan = Plan.load(args.plan)
    inp = Inputs(args, need_data=False)
    q = apply(inp.model, plan)
    out = save_model(inp.loaded, q, args.output)
    info(f"wrote {out} ({len(plan.assignments)} sites quantized)")
    return 0

