"""Hugging Face checkpoints as models: loading, fused-projection ties, MoE experts sites, the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from mpsearch.cli import main
from mpsearch.errors import ModelLoadError
from mpsearch.hf import fused_ties, head_and_embedding_sites, load_pretrained
from mpsearch.model import sites
from mpsearch.plan import Plan

from .conftest import cli_plan, tiny, token_batch


def test_checkpoint_loads_prepared_and_equal_to_the_saved_model(checkpoints):
    m = load_pretrained(checkpoints["llama"])
    ref = tiny("llama")
    x = token_batch(2, 8)["x"]
    assert m.config.use_cache is False and not m.training
    assert m.config._attn_implementation == "eager"
    torch.testing.assert_close(m(**x).logits, ref(**x).logits)


def test_not_a_checkpoint_and_remote_code_are_one_line_errors(tmp_path, checkpoints):
    with pytest.raises(ModelLoadError, match="config.json"):
        load_pretrained(tmp_path)
    d = tmp_path / "remote"
    d.mkdir()
    cfg = json.loads((checkpoints["llama"] / "config.json").read_text())
    cfg.update(model_type="not-a-known-type", auto_map={"AutoConfig": "conf.MyConfig"})
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        load_pretrained(d)


def test_fused_ties_from_the_architecture():
    names = [s.name for s in sites(tiny("llama"))]
    ties = fused_ties(names)
    assert ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
            "model.layers.0.self_attn.v_proj"] in ties
    assert ["model.layers.1.mlp.gate_proj", "model.layers.1.mlp.up_proj"] in ties
    assert len(ties) == 4  # two per layer, nothing else (o_proj, down_proj, lm_head stay free)


def test_moe_experts_are_one_site_per_projection_with_the_routed_fraction():
    model = tiny("mixtral")
    x = token_batch(2, 8)["x"]
    by = {s.name: s for s in sites(model, x)}
    gu = by["model.layers.0.mlp.experts.gate_up_proj"]
    assert gu.kind == "experts" and gu.shape == (4, 128, 32)
    assert gu.active == pytest.approx(0.5)  # 2 of 4 experts per token
    # per-sample MACs: every token through top_k = 2 experts of 128 x 32
    assert gu.macs == 8 * 2 * 128 * 32
    assert gu.numel == 4 * 128 * 32  # memory counts every expert


def test_head_and_embedding_sites_include_gpt2_positions():
    model = tiny("gpt2")
    names = [s.name for s in sites(model)]
    kept = head_and_embedding_sites(model, names)
    assert "transformer.wte" in kept and "transformer.wpe" in kept


@pytest.mark.parametrize("kind", ["llama", "gpt2", "mixtral"])
def test_cli_plan_on_checkpoint_with_text(kind, checkpoints, tmp_path, capsys):
    text = tmp_path / "t.txt"
    from mpsearch.examples.tiny_decoder import HELDOUT_MODULES, module_text

    text.write_text(module_text(HELDOUT_MODULES)[:4000])
    plan = cli_plan(checkpoints[kind], text, tmp_path, samples=8)
    # tie groups honoured: fused projections share one format
    for group in fused_ties(list(plan.assignments)):
        assert len({plan.assignments[s] for s in group}) == 1, group
    printed = capsys.readouterr().out
    assert "test perplexity" in printed and "test kl_p999" in printed


def test_cli_keep_16bit_and_token_ids(checkpoints, tmp_path):
    ids = token_batch(1, 200)["x"]["input_ids"].reshape(-1)
    f = tmp_path / "ids.pt"
    torch.save(ids, f)
    out = tmp_path / "plan.json"
    assert main(["plan", str(checkpoints["llama"]), "--data", str(f), "--seq-len", "16", "--samples", "8",
                 "--budget", "4bits", "--formats", "int2,int4,bf16", "--keep-16bit", "-o", str(out),
                 "--no-cache"]) == 0
    plan = Plan.load(out)
    assert "model.embed_tokens" not in plan.assignments and "lm_head" not in plan.assignments
    assert plan.totals["bytes"] > 2 * (96 * 32 * 2)  # the 16-bit embeddings and head count in memory
