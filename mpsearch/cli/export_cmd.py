"""`mpsearch export`: write a model's weights packed per a plan (safetensors), bytes as the plan predicts."""

from __future__ import annotations

import argparse

from ..export import export
from ..plan import Plan
from ._common import Inputs, add_model_args, info
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=False)
    p.add_argument("plan", metavar="PLAN", help="plan JSON from `mpsearch plan`")
    p.add_argument("-o", "--output", required=True, help="the .safetensors file to write")


@command("export", "write the model packed per a plan (codes, scales, zero-points) to safetensors", arguments)
def run(args: argparse.Namespace) -> int:
    if args.example and args.model and not args.plan:
        args.plan, args.model = args.model, None
    plan = Plan.load(args.plan)
    inp = Inputs(args, need_data=False)
    r = export(inp.model, plan, args.output)
    info(f"wrote {r.path}: {r.file_bytes} bytes = sites {r.site_bytes} (plan predicted "
         f"{r.predicted_site_bytes}) + other parameters {r.other_param_bytes} (16-bit) + buffers "
         f"{r.buffer_bytes} + header {r.header_bytes}")
    return 0
