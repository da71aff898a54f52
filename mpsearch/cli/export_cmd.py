"""`mpsearch export`: write a model's weights packed per a plan (safetensors), bytes as the plan predicts."""

from __future__ import annotations

import argparse

from ..packed import export
from ._common import add_plan_args, info, model_and_plan
from ._registry import command


@command("export", "write the model packed per a plan (codes, scales, zero-points) to safetensors",
         lambda p: add_plan_args(p, "the .safetensors file to write"))
def run(args: argparse.Namespace) -> int:
    inp, plan = model_and_plan(args)
    r = export(inp.model, plan, args.output, data=inp.data)
    info(f"wrote {r.path}: {r.file_bytes} bytes = sites {r.site_bytes} (plan predicted "
         f"{r.predicted_site_bytes}) + other parameters {r.other_param_bytes} (16-bit) + buffers "
         f"{r.buffer_bytes} + header {r.header_bytes}")
    return 0
