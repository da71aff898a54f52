"""(c) plan → apply → export → load_packed on every zoo model, as a module and as a `.pt2` (static
batch; dynamic for three): the packed file loads into a fresh model that runs and equals `apply`'s weights; a plan
made on the module fits its `.pt2` (one fingerprint)."""

from __future__ import annotations

import pytest
import torch

import mpsearch
from mpsearch.apply import apply
from mpsearch.packed import export, load_packed
from mpsearch.plan import Plan, describe

from .conftest import FORMS, labelled, model_in
from .models import NAMES


def _plan(model, x) -> Plan:
    """Mixed formats (int4 / int8 / bf16 by site position), priced as a real plan is."""
    site_list = mpsearch.sites(model, x)
    cycle = ("int4", "int8", "bf16")
    plan = Plan({s.name: cycle[i % 3] for i, s in enumerate(site_list)}, mpsearch.fingerprint(model))
    return describe(plan, model, site_list)


def _cases():
    """Module and static-batch .pt2 for every model; the dynamic .pt2 (same graph, symbolic batch) for three."""
    for name in NAMES:
        yield from ((name, f) for f in FORMS if f != "dynamic" or name in ("resnet18", "gpt2", "mixtral"))


@pytest.mark.parametrize(("name", "form"), list(_cases()))
def test_plan_apply_export_load_packed(zoo, name, form, tmp_path):
    entry = zoo(name)
    plan = _plan(entry.zoo.model, entry.zoo.x)  # made on the module, for every form
    model = model_in(entry, form)
    want = apply(model, plan)
    report = export(model, plan, tmp_path / "m.safetensors")
    assert report.site_bytes == report.predicted_site_bytes
    got = load_packed(tmp_path / "m.safetensors", model_in(entry, form))
    params = dict(got.named_parameters())
    site_params = {s.param for s in mpsearch.sites(model)}
    for n, p in want.named_parameters():
        if n in site_params:
            torch.testing.assert_close(params[n], p, rtol=0, atol=0)
        else:  # outside the sites: stored at 16 bits
            torch.testing.assert_close(params[n], p, rtol=1e-2, atol=1e-3)
    x, _ = labelled(entry)
    with torch.no_grad():
        out, ref = got(x), want(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=0.05, atol=0.05)
