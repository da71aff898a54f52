"""Language objectives against direct token-level computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mpsearch.data import as_data
from mpsearch.objectives import measure


class Fixed(nn.Module):
    """Returns stored logits for the given sample indices (so the objectives see known numbers)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits
        self.w = nn.Linear(1, 1)

    def forward(self, idx):
        return self.logits[idx]


def test_pooled_objectives_equal_token_level_formulas():
    g = torch.Generator().manual_seed(0)
    ref, out = torch.randn(6, 5, 7, generator=g), torch.randn(6, 5, 7, generator=g)
    y = torch.randint(0, 7, (6, 5), generator=g)
    data = as_data((torch.arange(6), y), batch_size=4).with_reference(Fixed(ref))  # two uneven batches
    got = measure(Fixed(out), data, ["perplexity", "kl", "kl_p999", "top1_agreement", "cross_entropy"])
    ce = F.cross_entropy(out.reshape(-1, 7), y.reshape(-1))
    assert got["perplexity"] == pytest.approx(math.exp(float(ce)), rel=1e-6)
    lp, lq = ref.log_softmax(-1), out.log_softmax(-1)
    kl = (lp.exp() * (lp - lq)).sum(-1).reshape(-1).double().numpy()
    assert got["kl"] == pytest.approx(kl.mean(), rel=1e-5)
    assert got["kl_p999"] == pytest.approx(np.quantile(kl, 0.999), rel=1e-5)
    assert got["top1_agreement"] == pytest.approx(float((out.argmax(-1) == ref.argmax(-1)).float().mean()))
    same = measure(Fixed(ref), data, ["kl_p999", "top1_agreement"])
    assert same["kl_p999"] == pytest.approx(0.0, abs=1e-6) and same["top1_agreement"] == 1.0
