"""`mpsearch export`: write a model's weights packed per a plan (safetensors), bytes as the plan predicts;
with `--target`, the artifact that runtime loads (ONNX, compressed-tensors, ModelOpt, GGUF)."""

from __future__ import annotations

import argparse

from ..packed import export
from ._common import add_data_args, add_plan_args, info, model_and_plan
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    add_plan_args(p, "the .safetensors file to write (with --target: the runtime's file or directory)", data=False)
    p.add_argument("--target", help="write for a runtime: onnxruntime (.onnx), vllm (HF directory, "
                   "compressed-tensors), tensorrt-llm (ModelOpt checkpoint directory), llama.cpp (.gguf + tensor-type "
                   "file)")
    add_data_args(p)


@command("export", "write the model packed per a plan (codes, scales, zero-points) to safetensors, or for a "
         "runtime (--target)", arguments)
def run(args: argparse.Namespace) -> int:
    inp, plan = model_and_plan(args)
    if args.target:
        from ..data import as_data
        from ..exporters import export as export_for

        example = None
        if args.data or inp.example is not None:
            example = as_data(args.data or inp.example.calibration).first_x[:1]
        r = export_for(inp.model, plan, args.output, args.target, example=example)
        info(f"wrote {r.path}: sites {r.site_bytes} bytes (plan predicted {r.predicted_site_bytes}) + other "
             f"{r.other_bytes}" + "".join(f"; {n}" for n in r.notes))
        return 0
    r = export(inp.model, plan, args.output, data=inp.data)
    info(f"wrote {r.path}: {r.file_bytes} bytes = sites {r.site_bytes} (plan predicted "
         f"{r.predicted_site_bytes}) + other parameters {r.other_param_bytes} (16-bit) + buffers "
         f"{r.buffer_bytes} + header {r.header_bytes}")
    return 0
