"""A tied weight is one tensor in every form: the nn.Module, its `.pt2` (saved and loaded: two Parameters
over one buffer) and its state dict give one site name, one fingerprint and one 16-bit size, and
`load_packed` writes the shared tensor once (never its 16-bit alias over the quantized site)."""

from __future__ import annotations

import warnings

import pytest
import torch

import mpsearch
from mpsearch import hardware_models
from mpsearch.apply import apply
from mpsearch.loading import LoadedModel, load_model, save_model
from mpsearch.model import fingerprint, sites
from mpsearch.packed import export, load_packed
from mpsearch.plan import Plan, describe

transformers = pytest.importorskip("transformers")


def _gpt2():
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, n_positions=16, vocab_size=50,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg), "transformer.wte", "lm_head.weight"


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=48, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                                   tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return transformers.LlamaForCausalLM(cfg), "model.embed_tokens", "lm_head.weight"


def _forms(make, tmp_path):
    torch.manual_seed(0)
    model, tied, alias = make()
    model = mpsearch.hf.prepare(model)
    assert model.get_parameter(alias) is model.get_parameter(f"{tied}.weight")
    ids = torch.randint(1, 40, (2, 6))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(torch.export.export(model, (ids,)), str(tmp_path / "m.pt2"))
    return model, load_model(tmp_path / "m.pt2"), ids, tied


def _logits(out):
    return out.logits if hasattr(out, "logits") else out[0] if isinstance(out, (tuple, list)) else out


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama-tied"])
def test_tied_head_has_one_name_fingerprint_and_size(make, tmp_path):
    model, loaded, ids, tied = _forms(make, tmp_path)
    gm = loaded.module
    mod_sites, pt2_sites = sites(model, ids), sites(gm, ids)
    assert [s.name for s in pt2_sites] == [s.name for s in mod_sites]
    assert tied in [s.name for s in mod_sites] and not any(s.name == "lm_head" for s in pt2_sites)
    assert fingerprint(gm) == fingerprint(model)
    ref_m = hardware_models.reference(model, mod_sites).full["bytes"]
    ref_g = hardware_models.reference(gm, pt2_sites).full["bytes"]
    n_unique = sum(p.numel() for p in model.parameters())  # the shared weight once
    assert ref_m == ref_g == 2 * n_unique


@pytest.mark.parametrize("make", [_gpt2, _llama], ids=["gpt2", "llama-tied"])
def test_load_packed_equals_apply_on_module_and_pt2(make, tmp_path):
    model, loaded, ids, tied = _forms(make, tmp_path)
    site_list = sites(model, ids)
    plan = Plan({s.name: ("int4" if s.name == tied else "int8") for s in site_list}, fingerprint(model))
    describe(plan, model, site_list)
    for name, m in (("module", model), ("pt2", loaded.module)):
        want = apply(m, plan)  # a plan made on the module fits its own .pt2
        export(m, plan, tmp_path / f"{name}.safetensors")
        got = load_packed(tmp_path / f"{name}.safetensors", apply(m, plan))  # start away from the result
        fresh = load_packed(tmp_path / f"{name}.safetensors", m)
        for out in (got, fresh):
            w = out.get_parameter(f"{tied}.weight")
            torch.testing.assert_close(w, want.get_parameter(f"{tied}.weight"))
            assert len(torch.unique(w[0])) <= 16  # int4 codes, not the alias's 16-bit copy
            torch.testing.assert_close(_logits(out(ids)), _logits(want(ids)), atol=2e-3, rtol=0)


def test_applied_pt2_keeps_the_tie(tmp_path):
    """`apply -o` of a tied .pt2 writes one tensor: the reload has the plan's fingerprint-bound weights."""
    model, loaded, ids, tied = _forms(_gpt2, tmp_path)
    site_list = sites(model, ids)
    plan = Plan({s.name: "int4" for s in site_list}, fingerprint(model))
    q = apply(loaded.module, plan)
    save_model(loaded, q, tmp_path / "q.pt2")
    back = load_model(tmp_path / "q.pt2").module
    assert fingerprint(back) == fingerprint(q) == fingerprint(apply(model, plan))
    assert [s.name for s in sites(back, ids)] == [s.name for s in site_list]


def test_tied_state_dict_round_trips_through_safetensors(tmp_path, monkeypatch):
    """safetensors refuses shared tensors: the tied weight is stored once and loads back into both names."""
    model, loaded, ids, tied = _forms(_gpt2, tmp_path)
    import sys
    import types

    factory = types.ModuleType("zoo_tied_factory")
    factory.build = lambda: mpsearch.hf.prepare(_gpt2()[0])
    monkeypatch.setitem(sys.modules, "zoo_tied_factory", factory)
    save_model(LoadedModel(model, "factory", "x"), model, tmp_path / "sd.safetensors")
    back = load_model(tmp_path / "sd.safetensors", factory="zoo_tied_factory:build").module
    assert fingerprint(back) == fingerprint(model)
    assert back.get_parameter("lm_head.weight") is back.get_parameter(f"{tied}.weight")
