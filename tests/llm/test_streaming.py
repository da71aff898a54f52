"""The block-streamed `kfac` estimator against the same statistics taken from the whole model at once."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mpsearch.data import as_data
from mpsearch.formats import ROWS, parse_choices
from mpsearch.hf import prepare
from mpsearch.model import site_layouts, sites
from mpsearch.objectives import get_objective
from mpsearch.sensitivity import get_estimator

from .conftest import FAMILIES, tiny, token_batch


def _reference(model, micro, site, choice, seed=0):
    """K-FAC-diag Ω of one linear site from full-model forward/backward passes with the same sampled labels."""
    mod = model.get_submodule(site)
    A, G, n = 0, 0, 0
    gen = torch.Generator().manual_seed(seed)
    keep = {}
    h1 = mod.register_forward_hook(lambda m, i, o: keep.update(x=i[0], y=o))
    try:
        for x in micro:
            logits = model(**x).logits.float()
            flat = logits.reshape(-1, logits.shape[-1])
            y = torch.multinomial(flat.softmax(-1).detach(), 1, generator=gen).reshape(-1)
            (g,) = torch.autograd.grad(F.cross_entropy(flat, y, reduction="sum"), keep["y"])
            xi = keep["x"].detach().reshape(-1, keep["x"].shape[-1])
            A = A + xi.T @ xi
            G = G + g.reshape(-1, g.shape[-1]).pow(2).sum(0)
            n += xi.shape[0]
    finally:
        h1.remove()
    w = mod.weight.detach()
    dw = choice.weight.quantize(w) - w
    return 0.5 * float((G / n * ((dw @ (A / n)) * dw).sum(1)).sum())


@pytest.mark.parametrize("kind", ["llama", "mixtral", *FAMILIES])
def test_kfac_streamed_equals_whole_model_statistics(kind):
    model = prepare(tiny(kind))
    data = as_data(token_batch(4, 10), batch_size=4)
    choices = parse_choices("int2,int4,bf16", None)
    site_list = sites(model, data.first_x)
    table = get_estimator("kfac", micro_batch=2).estimate(model, site_list, choices, data,
                                                           get_objective("cross_entropy"), seed=0)
    micro = [{"input_ids": data.batches[0].x["input_ids"][i:i + 2]} for i in (0, 2)]
    # a Linear of the first block, one of the last, and the LM head (the logits' soft-capping in Gemma 2)
    modules = dict(model.named_modules())
    linear = [s.name for s in site_list if isinstance(modules.get(s.name), torch.nn.Linear)]
    picked = [linear[0], [n for n in linear if ".1." in n][-1], *(["lm_head"] if "lm_head" in linear else [])]
    assert kind != "gemma2" or model.config.final_logit_softcapping == 1.0  # low enough to bend tiny logits
    for site in picked:
        for c in choices[:2]:
            ref = _reference(model, micro, site, c)
            assert table.omega(site, c.name) == pytest.approx(ref, rel=1e-4)
    # every site scored, Ω ordered by precision, the model left as it was
    assert set(table.frame.site) == {s.name for s in site_list}
    om = table.pivot()
    assert (om["int2"] > om["int4"]).all() and (om["int4"] > om["bf16"]).all()
    assert all(not p.requires_grad or True for p in model.parameters())


def test_kfac_is_deterministic_and_label_free():
    model = prepare(tiny("llama"))
    choices = parse_choices("int3,int8", None)
    labelled = as_data(token_batch(4, 8))
    free = as_data({"x": token_batch(4, 8)["x"]})
    site_list = sites(model, labelled.first_x)
    est = get_estimator("kfac", micro_batch=1)
    a = est.estimate(model, site_list, choices, labelled, get_objective("cross_entropy"), seed=3)
    b = est.estimate(model, site_list, choices, free.with_reference(model), get_objective("kl"), seed=3)
    # sampled labels: the same Fisher with labels and without, and the same numbers from the same seed
    assert a.frame.omega.tolist() == b.frame.omega.tolist()
    assert (a.frame.omega_se > 0).all()


def _block_reference(model, micro, parent, params, choice, seed=0):
    """Block-output Ω of a group from whole-model passes with the same sampled labels: the group's
    weights rounded together, the output change of `parent` on the 16-bit model's inputs to it."""
    mod = model.get_submodule(parent)
    keep, replay = {}, [False]

    def hook(m, args, kwargs, out):
        if not replay[0]:
            keep.update(args=args, kwargs=kwargs, y=out[0] if isinstance(out, tuple) else out)

    layouts = site_layouts(model)  # MoE experts quantize per expert and output channel
    q = {p[len(parent) + 1:]: layouts.get(p.removesuffix(".weight"), ROWS).quantize(
        choice.weight, model.get_parameter(p).detach()) for p in params}
    G, S, n = 0, 0, 0
    gen = torch.Generator().manual_seed(seed)
    handle = mod.register_forward_hook(hook, with_kwargs=True)
    try:
        for x in micro:
            logits = model(**x).logits.float()
            flat = logits.reshape(-1, logits.shape[-1])
            y = torch.multinomial(flat.softmax(-1).detach(), 1, generator=gen).reshape(-1)
            (g,) = torch.autograd.grad(F.cross_entropy(flat, y, reduction="sum"), keep["y"])
            replay[0] = True
            with torch.no_grad():
                yq = torch.func.functional_call(mod, q, keep["args"], keep["kwargs"])
            replay[0] = False
            yq = yq[0] if isinstance(yq, tuple) else yq
            d = (yq - keep["y"].detach()).reshape(-1, g.shape[-1])
            G = G + g.reshape(-1, g.shape[-1]).pow(2).sum(0)
            S = S + d.pow(2).sum(0)
            n += d.shape[0]
    finally:
        handle.remove()
    return 0.5 * float((G * S).sum()) / n ** 2


@pytest.mark.parametrize("kind, groups", [
    ("llama", {"model.layers.0.self_attn": ["q_proj", "k_proj", "v_proj"],
               "model.layers.1.mlp": ["gate_proj", "up_proj"]}),
    ("mixtral", {"model.layers.0.mlp.experts": ["gate_up_proj"], "model.layers.1.mlp.experts": ["down_proj"]}),
])
def test_kfac_block_output_scores_a_fused_group_at_its_module_output(kind, groups):
    model = prepare(tiny(kind))
    data = as_data(token_batch(4, 10), batch_size=4)
    choices = parse_choices("int2,int4,bf16", None)
    site_list = sites(model, data.first_x)
    obj = get_objective("cross_entropy")
    plain = get_estimator("kfac", micro_batch=2).estimate(model, site_list, choices, data, obj, seed=0)
    block = get_estimator("kfac", micro_batch=2, block_output=True).estimate(model, site_list, choices, data, obj,
                                                                             seed=0)
    micro = [{"input_ids": data.batches[0].x["input_ids"][i:i + 2]} for i in (0, 2)]
    grouped = set()
    for parent, leaves in groups.items():
        members = [f"{parent}.{leaf}" for leaf in leaves]
        params = [m + ".weight" if kind == "llama" else m for m in members]
        grouped |= set(members)
        for c in choices[:2]:
            ref = _block_reference(model, micro, parent, params, c)
            assert ref > 0
            assert sum(block.omega(m, c.name) for m in members) == pytest.approx(ref, rel=1e-4)
            # shared among the members as their own kfac Ω are
            own = [plain.omega(m, c.name) for m in members]
            assert ref != pytest.approx(sum(own), rel=1e-2)  # the block output is not the members' sum
            for m, o in zip(members, own):
                assert block.omega(m, c.name) == pytest.approx(ref * o / sum(own), rel=1e-4)
    # the sites outside any group keep their kfac rows exactly
    other = {"model.layers.0.self_attn.o_proj", "lm_head", "model.embed_tokens"}
    for m in other:
        for c in choices:
            assert block.omega(m, c.name) == plain.omega(m, c.name)
    assert set(block.frame.site) == {s.name for s in site_list}
    assert block.settings.get("block_output") is True and not plain.settings.get("block_output")
