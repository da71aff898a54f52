"""llama.cpp: a GGUF file (written with gguf-py) and the `--tensor-type-file` that `llama-quantize` takes.

Tensor names: a Hugging Face model whose `config.model_type` gguf-py knows (llama, mistral, qwen2, …)
gets llama.cpp's names from `gguf.get_tensor_name_map` (`model.layers.0.self_attn.q_proj.weight` →
`blk.0.attn_q.weight`); any other model keeps its parameter names. Site weights are stored as their
plan's GGUF type (`q4_0` … `q8_0` quantized by gguf-py, `bf16`, `fp16` → F16); other parameters as F32.
The tensor-type file has one `NAME=TYPE` line per site (names regex-escaped, anchored), so
`llama-quantize --tensor-type-file FILE model-f16.gguf out.gguf Q8_0` reproduces the plan on a GGUF
that `convert_hf_to_gguf.py` made (which also carries the tokenizer and hyperparameters this file
does not: this file is the plan's weights, read back by gguf-py, not a runnable llama.cpp model).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from torch import nn

from ..plan import Plan
from ._common import ExportResult, SiteWeight, atomic_file, need, plan_weights, predicted_bytes, refuse_unsupported

KEEP = {"bf16": "BF16", "fp16": "F16"}


def why_not(w: SiteWeight) -> str | None:
    f = w.choice.weight
    if w.choice.act is not None:
        return "llama.cpp quantizes activations itself; plan weights only"
    if f.family == "gguf" or f.name in KEEP:
        return None
    return "GGUF files hold GGUF types: plan with --target llama.cpp (q4_0 … q8_0, bf16, fp16)"


def tensor_names(model: nn.Module) -> dict[str, str]:
    """Parameter name → GGUF tensor name (llama.cpp's for a known HF architecture, else unchanged)."""
    gguf = need("gguf")
    names = [n for n, _ in model.named_parameters()]
    cfg = getattr(model, "config", None)
    arch = {a.lower(): a for a in (getattr(cfg, "model_type", "") or "",)}
    key = next((m for m, n in gguf.MODEL_ARCH_NAMES.items() if n in arch), None)
    if key is None:
        return {n: n for n in names}
    tmap = gguf.get_tensor_name_map(key, getattr(cfg, "num_hidden_layers", 0))
    out = {}
    for n in names:
        base, _, suffix = n.rpartition(".")
        mapped = tmap.get_name(base)
        out[n] = f"{mapped}.{suffix}" if mapped else n
    return out


def tensor_type_file(plan: Plan, items: list[SiteWeight], names: dict[str, str]) -> str:
    """The `--tensor-type-file` text: `^NAME$=TYPE` per site."""
    lines = [f"^{re.escape(names[w.param])}$={(KEEP.get(w.choice.weight.name) or w.choice.weight.name).lower()}"
             for w in items]
    return "\n".join(lines) + "\n"


def export_gguf(model: nn.Module, plan: Plan | str | Path, path: str | Path) -> ExportResult:
    """Write `path` (.gguf) and `path` with suffix `.tensor-types.txt`, atomically."""
    gguf = need("gguf")
    plan, items = plan_weights(model, plan)
    refuse_unsupported("GGUF", items, why_not, "plan with --target llama.cpp")
    names = tensor_names(model)
    by_param = {w.param: w for w in items}
    out = Path(path)
    site_bytes = 0
    arch = getattr(getattr(model, "config", None), "model_type", None) or "mpsearch"
    with atomic_file(out) as tmp:
        writer = gguf.GGUFWriter(str(tmp), arch)
        writer.add_string("mpsearch.plan_fingerprint", plan.fingerprint)
        for n, p in model.named_parameters():
            w = by_param.get(n)
            data = p.detach().float().cpu().numpy()
            if w is None:
                writer.add_tensor(names[n], data.astype(np.float32))
                continue
            f = w.choice.weight
            qtype = gguf.GGMLQuantizationType[KEEP.get(f.name) or f.name.upper()]
            rows = data.reshape(data.shape[0], -1) if data.ndim > 1 else data.reshape(1, -1)
            raw = gguf.quants.quantize(rows, qtype)
            site_bytes += raw.nbytes
            writer.add_tensor(names[n], raw, raw_shape=raw.shape, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        total = tmp.stat().st_size
    types = out.with_suffix(".tensor-types.txt")
    with atomic_file(types) as tmp:
        tmp.write_text(tensor_type_file(plan, items, names))
    return ExportResult(out, site_bytes, predicted_bytes(plan), total - site_bytes,
                        [f"llama-quantize --tensor-type-file {types}"])
