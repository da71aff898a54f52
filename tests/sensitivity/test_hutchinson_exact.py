"""Hutchinson per-site traces agree with the exact Hessian's block traces within their error bars."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import mpsearch


def exact_block_traces(model, x, y, params: list[str]) -> dict[str, float]:
    names = [n for n, _ in model.named_parameters()]
    values = [p.detach().clone() for p in model.parameters()]

    def loss_of(*ws):
        state = dict(zip(names, ws))
        out = torch.func.functional_call(model, state, (x,))
        return F.cross_entropy(out, y)

    out = {}
    for p in params:
        i = names.index(p)

        def single(w, i=i):
            ws = list(values)
            ws[i] = w
            return loss_of(*ws)

        h = torch.autograd.functional.hessian(single, values[i])
        n = values[i].numel()
        out[p] = float(h.reshape(n, n).diagonal().sum())
    return out


def test_traces_match_exact_hessian_within_error_bars(tiny):
    model, x, y = tiny
    assert sum(p.numel() for p in model.parameters()) <= 2000
    table = mpsearch.sensitivity(model, (x, y), formats="int4,int8", seed=1, tol=0.02, max_probes=2000)
    info = table.site_info.set_index("site")
    sites = mpsearch.sites(model, x)
    exact = exact_block_traces(model, x, y, [s.param for s in sites])
    for s in sites:
        est, se = info.loc[s.name, "trace"], info.loc[s.name, "trace_se"]
        assert se > 0
        assert abs(est - exact[s.param]) <= 4 * se, (s.name, est, se, exact[s.param])
        assert se <= 0.1 * abs(exact[s.param])  # a tight bar, so "within 4 se" is a real check


def test_omega_is_trace_per_param_times_perturbation(tiny):
    model, x, y = tiny
    table = mpsearch.sensitivity(model, (x, y), formats="int2,int4", seed=0, max_probes=50)
    info = table.site_info.set_index("site")
    site = mpsearch.sites(model, x)[0]
    w = model.get_parameter(site.param).detach()
    q = mpsearch.get_format("int2").quantize(w)
    expected = max(info.loc[site.name, "trace"], 0) / w.numel() * float((q - w).pow(2).sum())
    assert table.omega(site.name, "int2") == torch.tensor(expected).item() or abs(
        table.omega(site.name, "int2") - expected) <= 1e-9 * max(1.0, abs(expected))
    assert table.omega(site.name, "int4") < table.omega(site.name, "int2")
