"""compressed-tensors (vLLM, SGLang): a Hugging Face directory that `transformers` and vLLM load.

`config.json` is the model's own config plus `quantization_config` (`quant_method: compressed-tensors`,
one `config_group` per distinct scheme, `targets` = the exact module names, top-level `format` the one
format or `mixed-precision`), built with the library's own `QuantizationConfig`. Each quantized module's
tensors are made by the library's own compressor for its format (`infer_module_format`:
`pack-quantized` for INT weight-only, `int-quantized` for W8A8, `float-quantized` for FP8), fed
mpsearch's scales and its simulated weight, so the packed codes are mpsearch's codes:
- INT symmetric: codes q ∈ ±(2^(b−1)−1) (inside the library's [−2^(b−1), 2^(b−1)−1]). Asymmetric INT
  is refused: compressed-tensors 0.20 packs group/channel zero-points along the rows, but the
  `transformers` loader builds them unpacked and fails on the size mismatch (checked on a tiny Llama);
- scales: FP16 as mpsearch stores them (`weight_scale` (rows, 1) per channel, (rows, K/G) per group, (1,)
  per tensor); int8/fp8 activations: the plan's calibrated per-tensor `input_scale` (static).
Rounding convention: the library decodes q·s in the dtype of the loaded scale: loaded in float32 the
decompressed weight equals mpsearch's simulated weight bit for bit; loaded in fp16/bf16 it is that
value rounded once more to the 16-bit dtype (mpsearch keeps q·s exact in float32).
Other parameters are written in the model's 16-bit form (bf16 where fp16 would overflow).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..activations import plan_params
from ..plan import Plan
from ..quantize import sixteen_bit
from ._common import (
    ExportResult,
    SiteWeight,
    atomic_dir,
    need,
    plan_weights,
    predicted_bytes,
    quantized_experts,
    refuse_unsupported,
)


def why_not(w: SiteWeight) -> str | None:
    f, a = w.choice.weight, w.choice.act
    if f.is_full_precision:
        return None
    if why := quantized_experts(w, "compressed-tensors"):
        return why
    if f.family == "int":
        if f.asym:
            return ("asymmetric zero-points do not load through transformers with compressed-tensors 0.20; "
                    "use symmetric int")
        if a is not None and not (a.family == "int" and a.bits == 8 and not a.asym):
            return "int weights take symmetric int8 activations or none"
        return None
    if f.family == "minifloat" and f.kind == "fp8_e4m3" and f.granularity in ("pt", "pc"):
        if a is not None and a.name != "fp8_e4m3":
            return "fp8 weights take fp8_e4m3 activations or none"
        return None
    return "this exporter writes int (pack-/int-quantized) and fp8_e4m3 (float-quantized) weights"


def _args(fmt, ct):
    """compressed-tensors QuantizationArgs for an mpsearch weight format."""
    QA = ct.quantization.QuantizationArgs
    if fmt.family == "int":
        strategy = {"pt": "tensor", "pc": "channel", "g": "group"}[fmt.granularity]
        return QA(num_bits=fmt.bits, type="int", strategy=strategy, symmetric=not fmt.asym,
                  group_size=fmt.group if fmt.granularity == "g" else None, dynamic=False)
    return QA(num_bits=8, type="float", strategy={"pt": "tensor", "pc": "channel"}[fmt.granularity],
              symmetric=True, dynamic=False)


def _act_args(act, ct):
    if act is None:
        return None
    kind = "float" if act.family == "minifloat" else "int"
    return ct.quantization.QuantizationArgs(num_bits=8, type=kind, strategy="tensor",
                                            symmetric=not getattr(act, "asym", False), dynamic=False)


def _qparams(w: SiteWeight) -> dict[str, torch.Tensor]:
    """mpsearch's stored form as the library's state-dict entries (before its compressor packs them)."""
    f = w.choice.weight
    enc = f.encode(w.weight)
    rows, k = enc.codes.shape
    lead = {"pt": (1,), "pc": (rows, 1), "g": (rows, -(-k // max(f.group, 1)))}[f.granularity]
    out = {"weight": f.quantize(w.weight).float(), "weight_scale": enc.scales["scale"].reshape(lead)}
    if w.choice.act is not None:
        p = plan_params({w.site: w.record})[w.site][w.choice.act.name]
        out["input_scale"] = torch.tensor([p["scale"]], dtype=torch.float32)
    return out


def export_compressed_tensors(model: nn.Module, plan: Plan | str | Path, path: str | Path) -> ExportResult:
    """Write `model` per `plan` as a compressed-tensors Hugging Face directory (atomically)."""
    ct = need("compressed_tensors")
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.compressors.format import infer_module_format
    from compressed_tensors.quantization import QuantizationConfig, QuantizationScheme
    from safetensors.torch import save_file

    plan, items = plan_weights(model, plan)
    refuse_unsupported("compressed-tensors", items, why_not, "plan with --target vllm")
    modules = dict(model.named_modules())
    tensors: dict[str, torch.Tensor] = {}
    groups: dict[tuple, dict] = {}
    formats, site_bytes, done = set(), 0, set()
    for w in items:
        f = w.choice.weight
        if f.is_full_precision:
            continue
        weights, acts = _args(f, ct), _act_args(w.choice.act, ct)
        scheme = QuantizationScheme(targets=[w.site], weights=weights, input_activations=acts)
        fmt = infer_module_format(type(modules[w.site]), scheme)
        scheme.format = fmt.value
        packed = BaseCompressor.get_value_from_registry(fmt.value).compress(_qparams(w), scheme)
        for k, t in packed.items():
            tensors[f"{w.site}.{k}"] = t.contiguous()
            if k != "weight_shape" and not k.startswith("input_"):
                site_bytes += t.numel() * t.element_size()
        done.add(w.param)
        formats.add(fmt.value)
        g = groups.setdefault((weights.model_dump_json(), None if acts is None else acts.model_dump_json()),
                              {"targets": [], "weights": weights, "input_activations": acts, "format": fmt.value})
        g["targets"].append(w.site)
    for n, p in model.named_parameters():
        if n not in done:
            keep = next((w for w in items if w.param == n), None)
            t = keep.choice.weight.quantize(p.detach().float()).to(torch.bfloat16 if keep.choice.weight.name == "bf16"
                                                                    else torch.float16) if keep else sixteen_bit(p)
            tensors[n] = t.cpu().contiguous()
            if keep:
                site_bytes += t.numel() * t.element_size()
    config_groups = {f"group_{i}": QuantizationScheme(**g) for i, g in enumerate(groups.values())}
    qc = QuantizationConfig(config_groups=config_groups, quant_method="compressed-tensors",
                            format=formats.pop() if len(formats) == 1 else "mixed-precision",
                            quantization_status="compressed",
                            ignore=[w.site for w in items if w.choice.weight.is_full_precision
                                    and isinstance(modules.get(w.site), nn.Linear)])
    hf = getattr(model, "config", None)
    config = hf.to_dict() if hasattr(hf, "to_dict") else {}
    config["quantization_config"] = qc.model_dump(exclude_none=True)
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        total = sum(p.stat().st_size for p in tmp.iterdir())
    return ExportResult(Path(path), site_bytes, predicted_bytes(plan), total - site_bytes,
                        [f"{len(config_groups)} config group(s), format {config['quantization_config']['format']}"])
