"""GGUF export: gguf-py reads the file back to mpsearch's simulated weights; the tensor-type file names
llama.cpp's tensors; GGUF types are searchable formats with their true bits per weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mpsearch
from mpsearch.exporters import export
from mpsearch.formats import get_format
from mpsearch.model import Site
from mpsearch.targets import restrict

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")


def test_gguf_types_have_their_true_bits_and_match_gguf_py():
    bits = {n: get_format(n).bits_per_element((64, 256)) for n in ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0")}
    assert bits == {"q4_0": 4.5, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0, "q8_0": 8.5}
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(0))
    for n in bits:  # llama.cpp's reference rounding: gguf-py's numpy port, block by block
        qt = gguf.GGMLQuantizationType[n.upper()]
        ref = gguf.quants.dequantize(gguf.quants.quantize(x.numpy(), qt), qt)
        assert np.array_equal(get_format(n).quantize(x).numpy(), ref), n


def test_llama_cpp_target_needs_whole_blocks():
    sites = [Site("a", "linear", "a.weight", (64, 96)), Site("b", "linear", "b.weight", (64, 80))]
    allowed, _, _ = restrict("llama.cpp", sites, [get_format(n) for n in ("q4_0", "q8_0", "int4", "bf16")])
    assert [c.name for c in allowed["a"]] == ["q4_0", "q8_0", "bf16"]
    assert [c.name for c in allowed["b"]] == ["bf16"]  # 80 is not a multiple of 32


def test_gguf_round_trip_and_tensor_type_file(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    model = transformers.LlamaForCausalLM(cfg).eval()
    x = torch.randint(0, 128, (1, 8))
    types = ["q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "bf16", "fp16"]
    names = [s.name for s in mpsearch.sites(model, x)]
    plan = mpsearch.Plan.from_assignments(model, {n: types[i % len(types)] for i, n in enumerate(names)},
                                          example=x)
    r = export(model, plan, tmp_path / "m.gguf", "llama.cpp")
    assert r.site_bytes == r.predicted_site_bytes
    tensors = {t.name: t for t in gguf.GGUFReader(str(tmp_path / "m.gguf")).tensors}
    params = dict(model.named_parameters())
    mapping = {"model.layers.0.self_attn.q_proj": "blk.0.attn_q.weight", "model.embed_tokens": "token_embd.weight",
               "model.layers.0.mlp.down_proj": "blk.0.ffn_down.weight", "lm_head": "output.weight"}
    assert len(tensors) == len(params)
    for site, name in mapping.items():
        fmt, t = plan.assignments[site], tensors[name]
        assert t.tensor_type.name == {"fp16": "F16"}.get(fmt, fmt.upper())
        got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(params[f"{site}.weight"].shape)
        want = get_format(fmt).quantize(params[f"{site}.weight"].detach()).numpy()
        assert np.array_equal(got.astype(np.float32), want), site
    lines = (tmp_path / "m.tensor-types.txt").read_text().splitlines()
    assert len(lines) == len(plan.assignments)
    q_type = plan.assignments["model.layers.0.self_attn.q_proj"].replace("fp16", "f16")
    assert f"^blk\\.0\\.attn_q\\.weight$={q_type}" in lines
