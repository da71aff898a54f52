"""The block-streamed `kfac` estimator against the same statistics taken from the whole model at once."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mpsearch.data import as_data
from mpsearch.formats import parse_choices
from mpsearch.hf import prepare
from mpsearch.model import sites
from mpsearch.objectives import get_objective
from mpsearch.sensitivity import get_estimator

from .conftest import tiny, token_batch


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


@pytest.mark.parametrize("kind", ["llama", "mixtral"])
def test_kfac_streamed_equals_whole_model_statistics(kind):
    model = prepare(tiny(kind))
    data = as_data(token_batch(4, 10), batch_size=4)
    choices = parse_choices("int2,int4,bf16", None)
    site_list = sites(model, data.first_x)
    table = get_estimator("kfac", micro_batch=2).estimate(model, site_list, choices, data,
                                                           get_objective("cross_entropy"), seed=0)
    micro = [{"input_ids": data.batches[0].x["input_ids"][i:i + 2]} for i in (0, 2)]
    for site in ("model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.o_proj", "lm_head"):
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
