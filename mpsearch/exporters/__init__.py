"""Exporters: a plan written as the artifact a runtime loads (one module per format).

| target | exporter | writes |
| --- | --- | --- |
| onnxruntime | `onnx` | an ONNX model: DequantizeLinear-21 weights, QDQ int8 activations |
| vllm | `compressed-tensors` | a Hugging Face directory with `quantization_config` (compressed-tensors) |
| tensorrt-llm | `modelopt` | a ModelOpt unified checkpoint (`hf_quant_config.json`, MIXED_PRECISION) |
| llama.cpp | `gguf` | a GGUF file and the `--tensor-type-file` for `llama-quantize` |

`export(model, plan, path, target)` first checks the plan against the target's profile and refuses a
plan that breaks it (the lines `mpsearch check` prints).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from ..errors import ExportError
from ..plan import Plan
from ..targets import get_target, violations
from ._common import ExportResult

__all__ = ["EXPORTERS", "ExportResult", "export"]

EXPORTERS = {"onnx": "mpsearch.exporters.onnx:export_onnx",
             "compressed-tensors": "mpsearch.exporters.compressed_tensors:export_compressed_tensors",
             "modelopt": "mpsearch.exporters.modelopt:export_modelopt",
             "gguf": "mpsearch.exporters.gguf:export_gguf"}


def export(model: nn.Module, plan: Plan | str | Path, path: str | Path, target: str,
           example: torch.Tensor | None = None) -> ExportResult:
    """Write `model` per `plan` in the format `target` loads. `example`: one input batch (ONNX traces it)."""
    from ..model import sites

    t = get_target(target)
    if not isinstance(plan, Plan):
        plan = Plan.load(plan)
    problems = violations(t, sites(model, example), plan.assignments)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ExportError(f"the plan breaks {t.name}'s rules: {problems[0]}{more}; see `mpsearch check PLAN "
                          f"--target {t.name}`, or make the plan with --target {t.name}")
    mod, _, fn = EXPORTERS[t.exporter].partition(":")
    writer = getattr(importlib.import_module(mod), fn)
    if t.exporter == "onnx":
        if example is None:
            raise ExportError("the ONNX exporter traces the model: pass example= (one input batch) or --data")
        return writer(model, plan, path, example)
    return writer(model, plan, path)
