"""The decoder families users bring (`conftest.FAMILIES`), each as a saved checkpoint through the CLI: the
plan is made with the language-model default (kfac), every fused-projection group of the architecture
gets one format, MoE experts count every expert in memory and the routed fraction in `Site.active`, and
the applied plan runs. The expected groups are written out per architecture, not derived by `fused_ties`."""

from __future__ import annotations

import math
import re

import pytest
import torch

import mpsearch
from mpsearch.hf import fused_ties, load_pretrained, prepare
from mpsearch.model import sites
from mpsearch.plan import Plan

from .conftest import FAMILIES, cli_plan, tiny, token_batch

_QKV = tuple(f"model.layers.{{i}}.self_attn.{p}_proj" for p in "qkv")
_GATE_UP = ("model.layers.{i}.mlp.gate_proj", "model.layers.{i}.mlp.up_proj")
GROUPS = {  # per layer: the sibling projections a runtime fuses into one GEMM
    "qwen2": (_QKV, _GATE_UP), "qwen3": (_QKV, _GATE_UP), "mistral": (_QKV, _GATE_UP), "gemma2": (_QKV, _GATE_UP),
    "phi3": (), "gpt_neox": (),
    "qwen2_moe": (_QKV, ("model.layers.{i}.mlp.shared_expert.gate_proj", "model.layers.{i}.mlp.shared_expert.up_proj")),
}
FUSED_LINEARS = {  # already one Linear in the checkpoint: one site, nothing to tie
    "phi3": ("model.layers.{i}.self_attn.qkv_proj", "model.layers.{i}.mlp.gate_up_proj"),
    "gpt_neox": ("gpt_neox.layers.{i}.attention.query_key_value",),
}
EXPERTS = {"qwen2_moe": ("model.layers.{i}.mlp.experts.gate_up_proj", "model.layers.{i}.mlp.experts.down_proj")}
ROUTERS = {"qwen2_moe": ("model.layers.{i}.mlp.gate", "model.layers.{i}.mlp.shared_expert_gate")}  # kept 16-bit


def _per_layer(templates, layers=2):
    return [tuple(t.format(i=i) for t in group) for i in range(layers) for group in templates]


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    from mpsearch.examples.tiny_decoder import HELDOUT_MODULES, module_text

    f = tmp_path_factory.mktemp("text") / "t.txt"
    f.write_text(module_text(HELDOUT_MODULES)[:800])  # a few windows of 16 tokens: calibration and test
    return f


@pytest.mark.parametrize("kind", FAMILIES)
def test_cli_plans_each_family_with_its_fused_groups_tied(kind, checkpoints, text, tmp_path):
    plan = cli_plan(checkpoints[kind], text, tmp_path, samples=4)
    routers = {n for g in _per_layer([ROUTERS.get(kind, ())]) for n in g}
    assert routers.isdisjoint(plan.assignments)  # not searched: they stay 16-bit, as runtimes keep them
    assert all(s.name in routers for s in sites(tiny(kind)) if s.name not in plan.assignments)
    want = {frozenset(g) for g in _per_layer(GROUPS[kind])}
    assert {frozenset(g) for g in fused_ties(list(plan.assignments))} == want  # none missed, none invented
    for group in want:
        assert len({plan.assignments[s] for s in group}) == 1, sorted(group)
    for name in (n for g in _per_layer([FUSED_LINEARS.get(kind, ())]) for n in g):
        assert plan.sites[name]["kind"] == "linear"
    model = load_pretrained(checkpoints[kind])
    x = token_batch(2, 8)["x"]
    ref = model(**x).logits
    logits = mpsearch.apply(model, plan, data=token_batch(4, 16))(**x).logits  # data: GPTQ, when planned with it
    assert torch.isfinite(logits).all() and not torch.equal(logits, ref)


@pytest.mark.parametrize("kind", sorted(EXPERTS))
def test_moe_family_experts_count_every_expert_and_the_routed_fraction(kind):
    model = tiny(kind)
    cfg = model.config
    x = token_batch(2, 8)["x"]
    by = {s.name: s for s in sites(model, x)}
    frac = cfg.num_experts_per_tok / cfg.num_experts
    for name in (n for g in _per_layer([EXPERTS[kind]]) for n in g):
        s = by[name]
        p = model.get_parameter(name)
        assert s.kind == "experts" and s.shape[0] == cfg.num_experts
        assert s.numel == p.numel()  # memory: every expert
        assert s.active == pytest.approx(frac)
        assert s.macs == round(8 * frac * math.prod(s.shape))  # per sample: 8 tokens through top_k experts
    # the shared expert and its gate are ordinary dense Linears, always active
    assert by["model.layers.0.mlp.shared_expert.down_proj"].active == 1.0
    assert by["model.layers.0.mlp.shared_expert_gate"].kind == "linear"


@pytest.mark.parametrize("kind", FAMILIES)
def test_gguf_names_every_site_as_llama_cpp_does(kind, tmp_path):
    gguf = pytest.importorskip("gguf")
    from mpsearch.exporters import export

    model = prepare(tiny(kind))
    x = token_batch(1, 8)["x"]["input_ids"]
    site_list = sites(model, x)
    plan = Plan.from_assignments(model, {s.name: "bf16" if s.kind == "experts" else "q8_0" for s in site_list},
                                 example=x)  # llama.cpp keeps experts 16-bit
    r = export(model, plan, tmp_path / "m.gguf", "llama.cpp")
    assert r.site_bytes == r.predicted_site_bytes
    lines = (tmp_path / "m.tensor-types.txt").read_text().splitlines()
    names = [re.fullmatch(r"\^(.+)\$=\w+", line).group(1).replace("\\", "") for line in lines]
    # llama.cpp's names, never a Hugging Face one that llama-quantize would match to nothing
    assert all(re.fullmatch(r"(token_embd|output|blk\.\d\.\w+)\.weight", n) for n in names), names
    fused = [n for n in (m for g in _per_layer([EXPERTS.get(kind, ())]) for m in g) if n.endswith("gate_up_proj")]
    assert len(names) == len(set(names)) == len(site_list) + len(fused)  # a fused gate_up is gate and up
    tensors = {t.name: t for t in gguf.GGUFReader(str(tmp_path / "m.gguf")).tensors}
    assert set(names) <= set(tensors)
    for i, name in enumerate(fused):
        w = model.get_parameter(name).detach()
        for half, leaf in zip(w.chunk(2, dim=1), ("gate", "up")):  # transformers: gate, up = (x @ W.T).chunk(2)
            t = tensors[f"blk.{i}.ffn_{leaf}_exps.weight"]
            got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(half.shape)
            assert torch.equal(torch.from_numpy(got.astype("float32")), half.bfloat16().float())


def test_gguf_refuses_an_architecture_llama_cpp_lacks_in_one_line(tmp_path):
    pytest.importorskip("gguf")
    from transformers import OPTConfig, OPTForCausalLM

    from mpsearch.errors import ExportError
    from mpsearch.exporters import export

    torch.manual_seed(0)
    model = prepare(OPTForCausalLM(OPTConfig(vocab_size=96, hidden_size=32, ffn_dim=64, num_hidden_layers=1,
                                             num_attention_heads=4, word_embed_proj_dim=32,
                                             max_position_embeddings=64)))
    x = token_batch(1, 8)["x"]["input_ids"]
    plan = Plan.from_assignments(model, {s.name: "q8_0" for s in sites(model, x)}, example=x)
    with pytest.raises(ExportError, match="no architecture for model_type 'opt'.*another target") as e:
        export(model, plan, tmp_path / "m.gguf", "llama.cpp")
    assert "\n" not in str(e.value) and not (tmp_path / "m.gguf").exists()
