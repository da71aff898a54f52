"""Hessian-vector products without a second derivative: finite differences of first-order gradients."""

from __future__ import annotations

import torch
from torch import nn

from mpsearch.sensitivity.hessian import _double_backward_hvp, _finite_difference_hvp, hutchinson_traces


def _setup(act):
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), act, nn.Linear(6, 3)).double()
    x, y = torch.randn(32, 5, dtype=torch.float64), torch.randint(0, 3, (32,))
    params = [m[0].weight, m[2].weight]

    def loss_of(call):
        return nn.functional.cross_entropy(m(x), y)

    return params, loss_of


def test_finite_differences_match_exact_hvps_on_a_smooth_model():
    params, loss_of = _setup(nn.Tanh())
    vs = [torch.randn(3, *p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(1)) for p in params]
    exact = _double_backward_hvp(params, loss_of)(vs)
    fd = _finite_difference_hvp(params, loss_of)(vs)
    for a, b in zip(exact, fd, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-8)


def test_hardsigmoid_falls_back_instead_of_failing():
    """hardsigmoid_backward has no derivative: the double-backward engine fails, finite differences take over
    and give the same traces as the finite-difference engine alone (and the function is piecewise linear, so the
    traces equal the Gauss-Newton part's)."""
    params, loss_of = _setup(nn.Hardsigmoid())
    try:
        _double_backward_hvp(params, loss_of)([torch.ones(1, *p.shape, dtype=p.dtype) for p in params])
        raise AssertionError("hardsigmoid grew a second derivative; this test no longer covers the fallback")
    except RuntimeError as e:
        assert "not implemented" in str(e)
    tr, se, n = hutchinson_traces(None, params, loss_of, hvp="double", max_probes=16, min_probes=16,
                                  probe_batch=1, seed=3)
    vs_gen = torch.Generator().manual_seed(3)
    fd = _finite_difference_hvp(params, loss_of)
    want = torch.zeros(2, dtype=torch.float64)
    for _ in range(16):
        v = [(torch.randint(0, 2, (1, *p.shape), generator=vs_gen, dtype=torch.int8) * 2 - 1).to(p.dtype)
             for p in params]
        want += torch.stack([(a * b).sum() for a, b in zip(v, fd(v), strict=True)]).double() / 16
    torch.testing.assert_close(tr, want, rtol=1e-9, atol=1e-12)
    assert bool(torch.isfinite(tr).all()) and n.tolist() == [16, 16]


def test_unreached_tol_is_reported(caplog):
    import mpsearch

    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(32, 5), torch.randint(0, 3, (32,))
    t = mpsearch.sensitivity(m, (x, y), method="hutchinson", tol=1e-4, max_probes=8, cache=False)
    rel = t.site_info.trace_se / t.site_info.trace.abs()
    assert t.settings["tol_unmet"] == [s for s, r in zip(t.site_info.site, rel, strict=True) if r > 1e-4] == ["0", "2"]
    assert "--tol 0.0001 not reached for 2 of 2 sites within max_probes=8" in caplog.text
    loose = mpsearch.sensitivity(m, (x, y), method="hutchinson", tol=10.0, max_probes=8, cache=False)
    assert "tol_unmet" not in loose.settings
