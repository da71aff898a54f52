"""Hugging Face causal language models as mpsearch models: load a checkpoint directory, derive the ties.

A checkpoint directory (config.json + safetensors) is loaded from local files only (no hub access);
code shipped in the checkpoint runs only with an explicit `trust_remote_code=True`. The loaded
`PreTrainedModel` is used as it is (its site names are the checkpoint's tensor names, which the export
formats need) with three settings that mpsearch relies on: no KV cache (the forward returns only
logits and hidden states), eager attention (plain ops that support second derivatives, where the
default SDPA kernels do not) and evaluation mode.

Runtimes run one format per fused projection (q/k/v, gate/up) and per MoE experts block, so
`fused_ties` groups those sites; a MoE layer's experts are already one site per projection (one 3-D
weight), whose per-token compute is the routed fraction `top_k / num_experts` (`Site.active`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from .errors import ModelLoadError, UsageError

# sibling projections that deployment fuses into one GEMM: each tuple is one tie group per module
_FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("w1", "w3"),
          ("query", "key", "value"))


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub: everything is local
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def is_checkpoint_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "config.json").is_file()


def is_pretrained(model) -> bool:
    try:
        from transformers import PreTrainedModel
    except ImportError:
        return False
    return isinstance(model, PreTrainedModel)


def prepare(model: nn.Module) -> nn.Module:
    """A `PreTrainedModel` set up for mpsearch (in place): no KV cache, eager attention, eval mode."""
    if not is_pretrained(model):
        return model
    model.config.use_cache = False
    try:
        model.set_attn_implementation("eager")
    except (AttributeError, ValueError):  # older transformers: the private switch
        model.config._attn_implementation = "eager"
    return model.eval()


def load_pretrained(path: str | Path, *, trust_remote_code: bool = False, dtype: torch.dtype | None = None):
    """The causal LM in checkpoint directory `path`, prepared (see `prepare`)."""
    _offline()
    p = Path(path)
    if not is_checkpoint_dir(p):
        raise ModelLoadError(f"{str(p)!r} is not a Hugging Face checkpoint directory (it needs config.json)")
    try:
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM
    except ImportError as e:
        raise UsageError("loading a checkpoint directory needs transformers: "
                         "pip install 'mpsearch[transformers]'") from e
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    try:
        config = AutoConfig.from_pretrained(str(p), local_files_only=True, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            str(p), config=config, local_files_only=True, trust_remote_code=trust_remote_code,
            attn_implementation="eager", dtype=dtype or torch.float32)
    except ValueError as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        if ("trust_remote_code" in str(e) or "custom code" in str(e)) and not trust_remote_code:
            raise ModelLoadError(f"{str(p)!r} ships its own model code: loading it runs code from the directory. "
                                 "If you trust it, pass --trust-remote-code") from e
        raise ModelLoadError(f"cannot load {str(p)!r} as a causal language model ({msg})") from e
    except (OSError, KeyError) as e:
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot load {str(p)!r} ({msg}); it needs config.json and *.safetensors") from e
    return prepare(model)


def load_tokenizer(path: str | Path, *, trust_remote_code: bool = False):
    """The checkpoint's own tokenizer (local files only)."""
    _offline()
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError) as e:
        raise ModelLoadError(f"{str(path)!r} has no tokenizer (tokenizer.json); pass token ids "
                             "(.pt/.npz of int64) as --data instead of text") from e


def fused_ties(site_names: list[str]) -> list[list[str]]:
    """Tie groups of sibling projections that runtimes fuse (q/k/v, gate/up), from the site names
    (a site is `<module path>.<projection>`): each group is the siblings present under one parent."""
    names = set(site_names)
    groups = []
    for name in site_names:
        parent, _, leaf = name.rpartition(".")
        for fused in _FUSED:
            if leaf == fused[0]:
                group = [f"{parent}.{s}" if parent else s for s in fused if (f"{parent}.{s}" if parent else s) in names]
                if len(group) > 1:
                    groups.append(group)
    return groups


def head_and_embedding_sites(model: nn.Module, site_names: list[str]) -> list[str]:
    """The sites of the input embeddings and the LM head (what `keep_16bit` keeps at 16 bits)."""
    params = {id(p): n for n, p in model.named_parameters()}
    out = []
    for get in ("get_input_embeddings", "get_output_embeddings"):
        mod = getattr(model, get, lambda: None)()
        w = getattr(mod, "weight", None)
        if isinstance(w, torch.Tensor) and id(w) in params:
            name = re.sub(r"\.weight$", "", params[id(w)])
            if name in site_names and name not in out:
                out.append(name)
    for n in site_names:  # learned position embeddings (GPT-2's wpe)
        mod = model.get_submodule(n) if n in dict(model.named_modules()) else None
        if isinstance(mod, nn.Embedding) and n not in out:
            out.append(n)
    return out


def router_sites(model: nn.Module, site_names: list[str]) -> list[str]:
    """The sites of MoE routers: the Linear weights beside an experts block that score the experts
    (`mlp.gate`, num_experts outputs) or gate a shared expert (`shared_expert_gate`, one output). Routers
    are tiny and pick which experts run, so the planner keeps them 16-bit, as vLLM, llama.cpp and ModelOpt do."""
    names, out = set(site_names), set()
    for fqn in experts_modules(model):  # <block>.<experts>.<projection>: the router sits in <block>
        block, n_exp = fqn.rsplit(".", 2)[0], model.get_parameter(fqn).shape[0]
        for cname, child in model.get_submodule(block).named_children():
            w, site = getattr(child, "weight", None), f"{block}.{cname}"
            if site in names and isinstance(w, torch.Tensor) and w.dim() == 2 and w.shape[0] in (1, n_exp):
                out.add(site)
    return sorted(out)


def experts_modules(model: nn.Module) -> dict[str, tuple[nn.Module, float]]:
    """3-D expert weights of MoE layers: param FQN -> (its experts module, active fraction top_k / experts)."""
    cfg = getattr(model, "config", None)
    top_k = getattr(cfg, "num_experts_per_tok", None)
    n_exp = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None)
    out: dict[str, tuple[nn.Module, float]] = {}
    if not top_k or not n_exp:
        return out
    for mname, mod in model.named_modules():
        if not type(mod).__name__.endswith("Experts"):
            continue
        for pname, p in mod.named_parameters(recurse=False):
            if p.dim() == 3 and p.shape[0] == n_exp:
                out[f"{mname}.{pname}"] = (mod, float(top_k) / float(n_exp))
    return out


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks (the largest ModuleList of identical blocks)."""
    best = None
    for _, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) and len({type(m) for m in mod}) == 1:
            if best is None or len(mod) > len(best):
                best = mod
    if best is None:
        raise UsageError(f"{type(model).__name__} has no list of decoder blocks to stream")
    return best
