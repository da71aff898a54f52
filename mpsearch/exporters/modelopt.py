"""ModelOpt unified checkpoint (TensorRT-LLM PyTorch backend, vLLM `modelopt`): a Hugging Face directory.

`hf_quant_config.json` = {"producer": {"name": "mpsearch", …}, "quantization": {"quant_algo":
"MIXED_PRECISION", "quantized_layers": {module: {"quant_algo": …, "group_size"?: …}}, "exclude_modules":
[16-bit Linear modules], "kv_cache_quant_algo": null}}; `config.json` carries the equivalent
`quantization_config`, made by ModelOpt's own `convert_hf_quant_config_format` when `nvidia-modelopt` is
installed (else the same per-layer dict, marked as not converted). Per layer, as ModelOpt's
`to_quantized_weight` stores it (modelopt/torch/export/quant_utils.py):
- `FP8` (fp8_e4m3_pt:fp8_e4m3): `weight` float8_e4m3fn, `weight_scale` and `input_scale` float32 scalars;
- `W8A8_SQ_PER_CHANNEL` (int8:int8): `weight` int8, `weight_scale` float32 (rows,) (2 bytes a row more
  than the plan counts: mpsearch stores FP16 scales, exactly convertible), `input_scale`;
- `W4A16_AWQ` (int4_g128): `weight` uint8 packing two output rows per byte (row 2i in the low nibble,
  `pack_int4_in_uint8`), `weight_scale` float16 (rows, K/128);
- `W4A16_NVFP4` (nvfp4): `weight` uint8 packing two E2M1 codes along K (even index in the low nibble),
  `weight_scale` float8_e4m3fn (rows, K/16), `weight_scale_2` float32 scalar.
Codes and scales are mpsearch's, so decoding gives the simulated weights: bit for bit for FP8, INT8 and
INT4; NVFP4 decodes as P·(s·g) in ModelOpt (`NVFP4QTensor.dequantize`) where mpsearch computes (P·s)·g,
so those agree to within one float32 rounding.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .._version import __version__
from ..activations import plan_params
from ..plan import Plan
from ._common import (
    ExportResult,
    SiteWeight,
    atomic_dir,
    plan_weights,
    predicted_bytes,
    quantized_experts,
    refuse_unsupported,
)


def quant_algo(w: SiteWeight) -> tuple[str, int | None] | None:
    """(ModelOpt quant_algo, group size) for a site's choice, None if ModelOpt has none."""
    f, a = w.choice.weight, w.choice.act
    act = None if a is None else a.name.split("_p")[0].split("_mse")[0]
    if f.family == "minifloat" and f.kind == "fp8_e4m3" and f.granularity == "pt" and act == "fp8_e4m3":
        return "FP8", None
    if f.family == "int" and f.bits == 8 and f.granularity == "pc" and not f.asym and act == "int8":
        return "W8A8_SQ_PER_CHANNEL", None
    if f.family == "int" and f.bits == 4 and f.granularity == "g" and f.group == 128 and not f.asym and a is None:
        return "W4A16_AWQ", 128
    if f.family == "nvfp4" and a is None:
        return "W4A16_NVFP4", 16
    return None


def why_not(w: SiteWeight) -> str | None:
    if w.choice.weight.is_full_precision and w.choice.act is None:
        return None
    if why := quantized_experts(w, "a ModelOpt checkpoint"):
        return why
    if quant_algo(w) is None:
        return "ModelOpt stores FP8 (per tensor, fp8 activations), INT8 SmoothQuant, W4A16 AWQ (int4_g128), NVFP4"
    if quant_algo(w)[0] == "W4A16_AWQ" and w.weight.shape[0] % 2:
        return "W4A16_AWQ packs two output rows per byte: needs an even row count"
    return None


def _tensors(w: SiteWeight) -> dict[str, torch.Tensor]:
    algo, _ = quant_algo(w)
    f = w.choice.weight
    enc = f.encode(w.weight)
    out: dict[str, torch.Tensor] = {}
    if w.choice.act is not None:
        scale = plan_params({w.site: w.record})[w.site][w.choice.act.name]["scale"]
        out["input_scale"] = torch.tensor(scale, dtype=torch.float32)
    if algo == "FP8":
        out["weight"] = enc.codes.to(torch.uint8).view(torch.float8_e4m3fn).reshape(w.weight.shape)
        out["weight_scale"] = enc.scales["scale"].float().reshape(())
    elif algo == "W8A8_SQ_PER_CHANNEL":
        q = enc.codes.to(torch.int64)
        out["weight"] = torch.where(q >= 128, q - 256, q).to(torch.int8).reshape(w.weight.shape)
        out["weight_scale"] = enc.scales["scale"].float()
    elif algo == "W4A16_AWQ":
        q = enc.codes.to(torch.int64)  # two's complement nibbles, (rows, K)
        out["weight"] = (q[0::2] & 0x0F | (q[1::2] & 0x0F) << 4).to(torch.uint8)
        out["weight_scale"] = enc.scales["scale"].reshape(q.shape[0], -1)
    else:  # W4A16_NVFP4
        q = enc.codes.to(torch.int64)
        out["weight"] = (q[:, 0::2] | q[:, 1::2] << 4).to(torch.uint8)
        out["weight_scale"] = enc.scales["scale"].view(torch.float8_e4m3fn).reshape(q.shape[0], -1)
        out["weight_scale_2"] = enc.scales["tensor_scale"].float().reshape(())
    return out


def hf_quant_config(layers: dict[str, dict], exclude: list[str]) -> dict:
    return {"producer": {"name": "mpsearch", "version": __version__},
            "quantization": {"quant_algo": "MIXED_PRECISION", "kv_cache_quant_algo": None,
                             "quantized_layers": layers, "exclude_modules": exclude}}


def to_quantization_config(hfq: dict) -> dict:
    """config.json's `quantization_config`, by ModelOpt's own converter where it is installed."""
    try:
        from modelopt.torch.export.convert_hf_config import convert_hf_quant_config_format
    except ImportError:
        return {"quant_method": "modelopt", **hfq["quantization"], "converted_by": None}
    return {"quant_method": "modelopt", **convert_hf_quant_config_format(hfq)}


def export_modelopt(model: nn.Module, plan: Plan | str | Path, path: str | Path) -> ExportResult:
    """Write `model` per `plan` as a ModelOpt unified checkpoint directory (atomically)."""
    from safetensors.torch import save_file

    plan, items = plan_weights(model, plan)
    refuse_unsupported("a ModelOpt checkpoint", items, why_not, "plan with --target tensorrt-llm")
    modules = dict(model.named_modules())
    tensors, layers, done, site_bytes = {}, {}, set(), 0
    for w in items:
        if w.choice.weight.is_full_precision:
            continue
        algo, group = quant_algo(w)
        layers[w.site] = {"quant_algo": algo, **({"group_size": group} if group else {})}
        for k, t in _tensors(w).items():
            tensors[f"{w.site}.{k}"] = t.contiguous()
            if k != "input_scale":
                site_bytes += t.numel() * t.element_size()
        done.add(w.param)
    for n, p in model.named_parameters():
        if n not in done:
            keep = next((w for w in items if w.param == n), None)
            dt = torch.bfloat16 if keep is None or keep.choice.weight.name == "bf16" else torch.float16
            t = (keep.choice.weight.quantize(p.detach().float()) if keep else p.detach()).to(dt)
            tensors[n] = t.cpu().contiguous()
            if keep:
                site_bytes += t.numel() * t.element_size()
    exclude = [w.site for w in items
               if w.choice.weight.is_full_precision and isinstance(modules.get(w.site), nn.Linear)]
    hfq = hf_quant_config(layers, exclude)
    hf = getattr(model, "config", None)
    config = hf.to_dict() if hasattr(hf, "to_dict") else {}
    config["quantization_config"] = to_quantization_config(hfq)
    with atomic_dir(path) as tmp:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "hf_quant_config.json").write_text(json.dumps(hfq, indent=2))
        (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str))
        total = sum(p.stat().st_size for p in tmp.iterdir())
    return ExportResult(Path(path), site_bytes, predicted_bytes(plan), total - site_bytes,
                        [f"{len(layers)} quantized layers, {len(set(v['quant_algo'] for v in layers.values()))} "
                         "quant_algo(s)"])
