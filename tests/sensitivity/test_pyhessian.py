"""mpsearch's per-site traces agree with PyHessian's per-layer Hutchinson traces on a mid-size CNN."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mpsearch
from mpsearch.data import as_data
from mpsearch.formats import parse_choices
from mpsearch.objectives import get_objective
from mpsearch.sensitivity import get_estimator

pyhessian = pytest.importorskip("pyhessian")


def mid_cnn():
    torch.manual_seed(0)
    layers, cin = [], 3
    for cout in (16, 32, 32, 64):
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        cin = cout
    m = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64 * 4, 10))
    m.train()
    with torch.no_grad():
        m(torch.randn(32, 3, 8, 8))  # non-trivial BatchNorm statistics
    return m.eval()


def test_traces_match_pyhessian_within_ten_percent():
    model = mid_cnn()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 3, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    site_list = mpsearch.sites(model, x)
    table = get_estimator("hessian", tol=0.02).estimate(
        model, site_list, parse_choices("int4", []), as_data((x, y)), get_objective("cross_entropy")
    )
    ours = dict(zip(table.site_info.site, table.site_info.trace, strict=False))
    params = dict(model.named_parameters())
    for p in params.values():
        p.requires_grad_(False)
    for s in site_list:
        w = params[s.param]
        w.requires_grad_(True)
        torch.manual_seed(0)
        h = pyhessian.hessian(model, F.cross_entropy, data=(x, y), cuda=False)
        vals = []
        while len(vals) < 600:
            vals += h.trace(maxIter=50, tol=0.0)
            t = torch.tensor(vals, dtype=torch.float64)
            if t.std() / math.sqrt(len(t)) < 0.025 * t.mean():
                break
        w.grad = None
        w.requires_grad_(False)
        assert ours[s.name] == pytest.approx(float(t.mean()), rel=0.10), s.name
