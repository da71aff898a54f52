"""llama.cpp: a GGUF file (written with gguf-py) and the `--tensor-type-file` that `llama-quantize` takes.

Tensor names: a Hugging Face model gets llama.cpp's names from `gguf.get_tensor_name_map` for the
architecture `convert_hf_to_gguf.py` writes its `config.model_type` as (`qwen2_moe` → `qwen2moe`,
`gpt_neox` → `gptneox`, `mistral`/`mixtral` → `llama`): `model.layers.0.self_attn.q_proj.weight` →
`blk.0.attn_q.weight`; a 3-D experts weight is `blk.0.ffn_down_exps.weight`, and the `gate_up_proj`
that transformers 5 fuses is llama.cpp's two tensors, `ffn_gate_exps` and `ffn_up_exps` (its halves along
the output dimension, one format). A Hugging Face model whose architecture or site llama.cpp has no name
for is refused (its tensor-type lines would match nothing, and llama-quantize would ignore the plan
silently); a model without a config keeps its parameter names. Site weights are stored as their
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

from ..errors import ExportError
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


# Hugging Face model types that convert_hf_to_gguf.py writes as another llama.cpp architecture (it
# registers MistralForCausalLM and MixtralForCausalLM as its LlamaModel, DeepseekV3ForCausalLM as DeepseekV2Model)
_CONVERTED_AS = {"mistral": "llama", "mixtral": "llama", "cohere": "command-r", "deepseek_v3": "deepseek2"}


def _arch(gguf, model_type: str):
    """gguf-py's MODEL_ARCH for a Hugging Face `model_type`, or None if llama.cpp has none."""
    by_name = {n: a for a, n in gguf.MODEL_ARCH_NAMES.items()}
    t = model_type.lower().removesuffix("_text")  # gemma3_text: the text model of gemma3
    return next((by_name[c] for c in (t, t.replace("_", ""), _CONVERTED_AS.get(t)) if c in by_name), None)


def tensor_names(model: nn.Module, sites: set[str] = frozenset()) -> dict[str, list[str]]:
    """Parameter name → its GGUF tensor names (llama.cpp's for a Hugging Face architecture, else unchanged):
    one name, or two for a fused 3-D experts `gate_up_proj` (gate, up). Raises ExportError naming the
    architecture, or the parameters in `sites`, llama.cpp has no name for."""
    gguf = need("gguf")
    params = dict(model.named_parameters())
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if not model_type:
        return {n: [n] for n in params}
    arch = _arch(gguf, model_type)
    if arch is None:
        raise ExportError(f"GGUF: llama.cpp has no architecture for model_type {model_type!r}, so no tensor "
                          "name to give its plan; export it with another target (e.g. --target vllm)")
    tmap = gguf.get_tensor_name_map(arch, getattr(model.config, "num_hidden_layers", 0))

    def name(n: str) -> str | None:
        base, _, suffix = n.rpartition(".")
        if (mapped := tmap.get_name(base)) is not None:
            return f"{mapped}.{suffix}"
        return None if (mapped := tmap.get_name(n)) is None else f"{mapped}.weight"  # 3-D experts: no .weight

    out, missing = {}, []
    for n, p in params.items():
        parent, _, leaf = n.rpartition(".")
        got = [name(n)]
        if got[0] is None and leaf == "gate_up_proj" and p.dim() == 3:
            got = [name(f"{parent}.gate_proj"), name(f"{parent}.up_proj")]
        if None in got:
            missing += [n] if n in sites else []
            got = [n]
        out[n] = got
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ExportError(f"GGUF: llama.cpp's {gguf.MODEL_ARCH_NAMES[arch]} architecture has no tensor named "
                          f"for {shown}; export with another target (e.g. --target vllm)")
    return out


def tensor_type_file(plan: Plan, items: list[SiteWeight], names: dict[str, list[str]]) -> str:
    """The `--tensor-type-file` text: `^NAME$=TYPE` per GGUF tensor of each site."""
    lines = [f"^{re.escape(n)}$={(KEEP.get(w.choice.weight.name) or w.choice.weight.name).lower()}"
             for w in items for n in names[w.param]]
    return "\n".join(lines) + "\n"


def export_gguf(model: nn.Module, plan: Plan | str | Path, path: str | Path) -> ExportResult:
    """Write `path` (.gguf) and `path` with suffix `.tensor-types.txt`, atomically."""
    gguf = need("gguf")
    plan, items = plan_weights(model, plan)
    refuse_unsupported("GGUF", items, why_not, "plan with --target llama.cpp")
    names = tensor_names(model, {w.param for w in items})
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
            # a fused gate_up_proj (experts, out, in): gate is the first half of the outputs, as transformers splits it
            parts = np.split(data, len(names[n]), axis=-2) if len(names[n]) > 1 else [data]
            for name, part in zip(names[n], parts):
                if w is None:
                    writer.add_tensor(name, part.astype(np.float32))
                    continue
                f = w.choice.weight
                qtype = gguf.GGMLQuantizationType[KEEP.get(f.name) or f.name.upper()]
                raw = gguf.quants.quantize(np.ascontiguousarray(part if part.ndim > 1 else part.reshape(1, -1)), qtype)
                site_bytes += raw.nbytes
                writer.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=qtype)
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
