"""compressed-tensors export: the directory loads through transformers + compressed-tensors and decodes to
mpsearch's simulated weights bit for bit; logits agree with the simulated model."""

from __future__ import annotations

import json

import pytest
import torch

import mpsearch
from mpsearch.activations import plan_params
from mpsearch.apply import quantized
from mpsearch.errors import ExportError
from mpsearch.exporters import export
from mpsearch.formats import get_choice

pytest.importorskip("compressed_tensors")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def tiny_llama():
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   tie_word_embeddings=False)
    return transformers.LlamaForCausalLM(cfg).eval(), torch.randint(0, 256, (4, 16))


def assignment(names):
    out = {}
    for n in names:
        leaf = n.rpartition(".")[2]
        if leaf in ("q_proj", "k_proj", "v_proj"):
            out[n] = "int4_g32" if ".0." in n else "fp8_e4m3"
        elif leaf == "o_proj":
            out[n] = "int8:int8" if ".0." in n else "int8_g64"
        elif leaf in ("gate_proj", "up_proj"):
            out[n] = "int4" if ".0." in n else "fp8_e4m3_pt"
        elif leaf == "down_proj":
            out[n] = "int4_g128"
    return out


def test_loads_and_matches_the_simulated_model(tiny_llama, tmp_path):
    model, x = tiny_llama
    sites = mpsearch.sites(model, x[:1])
    plan = mpsearch.Plan.from_assignments(model, assignment([s.name for s in sites]), example=x[:1], data=x)
    r = export(model, plan, tmp_path / "ckpt", "vllm")
    assert r.site_bytes == r.predicted_site_bytes
    qc = json.loads((tmp_path / "ckpt" / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "mixed-precision"
    qkv = [g for g in qc["config_groups"].values() if "model.layers.0.self_attn.q_proj" in g["targets"]][0]
    assert {"model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.v_proj"} <= set(qkv["targets"])
    assert qkv["weights"]["group_size"] == 32 and qkv["format"] == "pack-quantized"

    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt", dtype=torch.float32).eval()
    with torch.no_grad():
        got = loaded(x).logits  # the first forward decompresses every module
        with quantized(model, plan.assignments, plan_params(plan.sites)):
            want = model(x).logits
    params = dict(model.named_parameters())
    for name, p in loaded.named_parameters():
        if name.endswith("proj.weight"):
            sim = get_choice(plan.assignments[name[:-7]]).weight.quantize(params[name].detach())
            assert torch.equal(p.detach(), sim), name
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.999
    assert (got - want).abs().max() < 1e-3


def test_refuses_what_vllm_cannot_load(tiny_llama, tmp_path):
    model, x = tiny_llama
    plan = mpsearch.Plan.from_assignments(model, {"model.layers.0.mlp.down_proj": "int3"}, example=x[:1])
    with pytest.raises(ExportError, match="breaks vllm's rules: model.layers.0.mlp.down_proj: int3"):
        export(model, plan, tmp_path / "ckpt", "vllm")
    assert not (tmp_path / "ckpt").exists()
