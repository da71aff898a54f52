"""The decoder families users bring (`conftest.FAMILIES`), each as a saved checkpoint through the CLI: the
plan is made with the language-model default (kfac), every fused-projection group of the architecture
gets one format, MoE experts count every expert in memory and the routed fraction in `Site.active`, and
the applied plan runs. The expected groups are written out per architecture, not derived by `fused_ties`."""

from __future__ import annotations

import math

import pytest
import torch

import mpsearch
from mpsearch.cli import main
from mpsearch.hf import fused_ties, load_pretrained
from mpsearch.model import sites
from mpsearch.plan import Plan

from .conftest import FAMILIES, tiny, token_batch

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
    out = tmp_path / "plan.json"
    rc = main(["plan", str(checkpoints[kind]), "--data", str(text), "--seq-len", "16", "--samples", "4",
               "--budget", "4.5bits", "--formats", "int2,int4,int8,bf16", "-o", str(out), "--no-cache"])
    assert rc == 0
    plan = Plan.load(out)
    assert plan.provenance["estimator"] == "kfac"
    assert plan.totals["avg_bits"] <= 4.5 + 1e-9
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
