"""Per-sample gradient products from hooks agree with per-sample autograd (brute force)."""

import pytest
import torch
from torch import nn

from mpsearch.model import sites
from mpsearch.sensitivity._persample import Taps, Unsupported


def brute(model, x, site_params, cot):
    """Per-sample weight gradients of <out_x, cot_x> by one autograd call per sample."""
    out = []
    for i in range(x.shape[0]):
        y = model(x[i : i + 1])
        gs = torch.autograd.grad((y * cot[i : i + 1]).sum(), site_params, allow_unused=True)
        out.append([torch.zeros_like(p) if g is None else g for g, p in zip(gs, site_params, strict=False)])
    return out


MODELS = {
    "linear": (
        lambda: nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)),
        lambda g: torch.randn(6, 5, generator=g),
    ),
    "linear_seq": (
        lambda: nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)),
        lambda g: torch.randn(6, 4, 5, generator=g),
    ),
    "conv2d": (
        lambda: nn.Sequential(
            nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2),
            nn.ReLU(),
            nn.Conv2d(6, 5, 2, padding="same", dilation=2),
            nn.Flatten(),
            nn.Linear(5 * 16, 3),
        ),
        lambda g: torch.randn(5, 4, 8, 8, generator=g),
    ),
    "conv1d": (
        lambda: nn.Sequential(nn.Conv1d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 7, 2)),
        lambda g: torch.randn(5, 3, 9, generator=g),
    ),
}


class _Emb(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 4, padding_idx=0)
        self.head = nn.Linear(4, 3)

    def forward(self, ids):
        return self.head(torch.tanh(self.emb(ids)).mean(1))


@pytest.mark.parametrize("name", [*MODELS, "embedding"])
def test_norms_and_contractions_match_per_sample_autograd(name):
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    if name == "embedding":
        model, x = _Emb(), torch.randint(0, 11, (6, 7), generator=g)
        x[0, :3] = 0  # padding rows get no gradient
        x[1, 2] = x[1, 4]  # a repeated id within one sample
    else:
        make, data = MODELS[name]
        model, x = make(), data(g)
    site_list = sites(model, x)
    params = [model.get_parameter(s.param) for s in site_list]
    with Taps(model, site_list) as taps:
        taps.reset(x.shape[0])
        out = model(x)
        cot = torch.randn(out.shape, generator=g)
        ds = taps.deltas(out, cot)
        norms = [t.sq_norms(d) for t, d in zip(taps.taps, ds, strict=False)]
        mats = [[torch.randn(p.shape, generator=g) for _ in range(2)] for p in params]
        lin = [t.contract(d, m, 1) for t, d, m in zip(taps.taps, ds, mats, strict=False)]
        sq = [t.contract(d, m, 2) for t, d, m in zip(taps.taps, ds, mats, strict=False)]
    ref = brute(model, x, params, cot)
    for j in range(len(params)):
        gx = torch.stack([r[j] for r in ref])  # (N, *W)
        torch.testing.assert_close(norms[j], gx.pow(2).flatten(1).sum(1), rtol=1e-4, atol=1e-6)
        for k, m in enumerate(mats[j]):
            torch.testing.assert_close(lin[j][:, k], (gx * m).flatten(1).sum(1), rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(sq[j][:, k], (gx.pow(2) * m).flatten(1).sum(1), rtol=1e-4, atol=1e-6)


def test_a_module_called_twice_is_unsupported():
    lin = nn.Linear(3, 3)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, x):
            return self.lin(torch.relu(self.lin(x)))

    m = Twice()
    x = torch.randn(2, 3)
    with pytest.raises(Unsupported, match="more than once"), Taps(m, sites(m)) as taps:
        taps.reset(2)
        m(x)
