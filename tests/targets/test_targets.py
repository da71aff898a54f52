"""Target profiles: restrict() before the search makes every plan deployable; violations() finds each break."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpsearch import hardware_models
from mpsearch.errors import UsageError
from mpsearch.formats import get_choice, parse_choices
from mpsearch.model import Site
from mpsearch.search import SearchProblem
from mpsearch.search.ilp import solve_ilp
from mpsearch.targets import candidates, get_target, keep_allowed, restrict, target_names, tie_groups, violations


def llama_sites(layers: int = 2, experts: int = 0) -> list[Site]:
    """Site list shaped like a small Llama (q/k/v/o, gate/up/down, optional MoE experts, lm_head)."""
    out = [Site("model.embed_tokens", "embedding", "model.embed_tokens.weight", (512, 64))]
    for i in range(layers):
        p = f"model.layers.{i}"
        out += [Site(f"{p}.self_attn.{n}_proj", "linear", f"{p}.self_attn.{n}_proj.weight", (64, 64))
                for n in ("q", "k", "v", "o")]
        if experts:
            out += [Site(f"{p}.mlp.experts.{e}.{n}", "linear", f"{p}.mlp.experts.{e}.{n}.weight", shape)
                    for e in range(experts) for n, shape in (("w1", (96, 64)), ("w3", (96, 64)), ("w2", (64, 96)))]
        else:
            out += [Site(f"{p}.mlp.{n}_proj", "linear", f"{p}.mlp.{n}_proj.weight", shape)
                    for n, shape in (("gate", (96, 64)), ("up", (96, 64)), ("down", (64, 96)))]
    out.append(Site("lm_head", "linear", "lm_head.weight", (512, 64)))
    return out


def test_profiles_load_and_name_an_exporter():
    assert set(target_names()) >= {"vllm", "tensorrt-llm", "llama.cpp", "onnxruntime"}
    for n in target_names():
        t = get_target(n)
        assert t.kernels and t.exporter and t.kinds
    with pytest.raises(UsageError, match="unknown target 'vlm'.*vllm"):
        get_target("vlm")


def test_tie_groups_from_module_names():
    names = [s.name for s in llama_sites(1, experts=2)]
    groups = {tuple(g) for g in tie_groups(("qkv", "gate_up", "experts"), names)}
    qkv = tuple(f"model.layers.0.self_attn.{n}_proj" for n in "qkv")
    experts = tuple(f"model.layers.0.mlp.experts.{e}.{n}" for e in range(2) for n in ("w1", "w3", "w2"))
    assert groups == {qkv, experts}  # gate/up (w1/w3) merged into the experts' group, o_proj alone


def test_vllm_restricts_formats_kinds_and_blocks():
    sites = llama_sites(1) + [Site("odd", "linear", "odd.weight", (64, 80))]  # K=80: no group of 32/64/128
    choices = parse_choices("int3,int4,int4_g128,int4_g32,int8:int8,fp8_e4m3,nvfp4,mxfp6_e3m2,bf16", [])
    allowed, ties, notes = restrict("vllm", sites, choices)
    names = {s: [c.name for c in cs] for s, cs in allowed.items()}
    assert names["model.embed_tokens"] == ["bf16"] and names["lm_head"] == ["bf16"]
    q = names["model.layers.0.self_attn.q_proj"]
    assert q == ["int4", "int4_g32", "int8:int8", "fp8_e4m3", "nvfp4", "bf16"]  # K=64: g128 does not divide
    assert names["odd"] == ["int4", "int8:int8", "fp8_e4m3", "nvfp4", "bf16"]  # 80 % 16 == 0, 80 % 32 != 0
    down = names["model.layers.0.mlp.down_proj"]
    assert "int4_g32" in down and "int4_g128" not in down
    assert ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
            "model.layers.0.self_attn.v_proj"] in ties
    assert any("int3 excluded" in n for n in notes)


def test_restrict_refuses_when_a_site_has_nothing_left():
    with pytest.raises(UsageError, match="add bf16"):
        restrict("vllm", llama_sites(1), parse_choices("int3,int4", []))


def test_violations_of_a_hand_broken_plan_one_line_each():
    sites = llama_sites(1)
    plan = {s.name: "bf16" for s in sites}
    plan |= {"model.layers.0.self_attn.q_proj": "int4", "model.layers.0.self_attn.k_proj": "int8",
             "model.layers.0.self_attn.v_proj": "int4", "model.layers.0.mlp.down_proj": "int3",
             "model.layers.0.mlp.gate_proj": "int4_g128", "model.layers.0.mlp.up_proj": "int4_g128",
             "model.embed_tokens": "int8", "lm_head": "int8"}
    lines = violations("vllm", sites, plan)
    assert len(lines) == 6, lines  # gate and up each break the K rule
    assert any(ln.startswith("model.layers.0.mlp.down_proj: int3: no vllm kernel") for ln in lines)
    assert any(ln.startswith("model.layers.0.mlp.gate_proj: int4_g128:") and "does not divide K=64" in ln
               for ln in lines)
    assert any(ln.startswith("model.embed_tokens: int8: vllm keeps embedding") for ln in lines)
    assert any(ln.startswith("lm_head: int8: vllm loads lm_head unquantized") for ln in lines)
    assert any("q_proj, " in ln and "must share one format" in ln and "k_proj=int8" in ln for ln in lines)
    ok = {s.name: "bf16" for s in sites} | {f"model.layers.0.self_attn.{n}_proj": "int4" for n in "qkv"}
    assert violations("vllm", sites, ok) == []


POOL = ["int2", "int3", "int4", "int5", "int8", "int4_g32", "int4_g64", "int4_g128", "int4_asym_g32", "int8_pt",
        "int8:int8", "int4:int8", "fp8_e4m3", "fp8_e4m3_pt", "fp8_e4m3:fp8_e4m3", "fp4_e2m1_g32", "mxfp4",
        "mxfp8_e4m3", "nvfp4", "fp16"]


@settings(max_examples=25, deadline=None)
@given(picked=st.sets(st.sampled_from(POOL), min_size=1, max_size=8), frac=st.floats(0.05, 1.0),
       experts=st.sampled_from([0, 2]), seed=st.integers(0, 2**16), target=st.sampled_from(["vllm", "tensorrt-llm"]))
def test_restricted_search_never_emits_what_the_profile_forbids(picked, frac, experts, seed, target):
    """The planner's path (restrict -> cost table -> ties -> ILP) over random candidates and budgets."""
    sites = llama_sites(2, experts)
    choices = parse_choices(sorted(picked) + ["bf16"], [])
    allowed, ties, _ = restrict(target, sites, choices)
    costs = keep_allowed(hardware_models.cost_table(sites, candidates(choices, allowed)), allowed)
    rng = np.random.default_rng(seed)
    table = costs.assign(omega=rng.random(len(costs)) / costs.bits)
    lo = table.groupby("site").bits.min().sum()
    hi = table.groupby("site").bits.max().sum()
    problem = SearchProblem(table, {"bits": lo + frac * (hi - lo)}, ties)
    assign = solve_ilp(problem).assignments
    assert violations(target, sites, assign) == []
    for c in set(assign.values()):  # the search also never sees a choice outside the candidates
        assert get_choice(c) in choices


def test_keep_allowed_drops_rows():
    t = pd.DataFrame({"site": ["a", "a", "b"], "format": ["int4", "bf16", "int4"], "bits": [1, 2, 3]})
    out = keep_allowed(t, {"a": [get_choice("bf16")], "b": [get_choice("int4")]})
    assert list(zip(out.site, out.format)) == [("a", "bf16"), ("b", "int4")]
