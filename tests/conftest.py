"""Shared fixtures: the bundled real example and small deterministic models."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

import mpsearch
from mpsearch.examples import load_example


@contextlib.contextmanager
def single_thread():
    """For packages of tiny models: one torch thread avoids oversubscribing a shared CPU (restored after)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture(scope="session", autouse=True)
def _session_cache_root(tmp_path_factory):
    """Session fixtures (e.g. `digits_sensitivity`) cache under a temporary root, never the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MPSEARCH_CACHE", str(tmp_path_factory.mktemp("mpsearch-cache")))
        mp.delenv("MPSEARCH_CACHE_DIR", raising=False)
        yield


@pytest.fixture(autouse=True)
def _private_cache_root(tmp_path, monkeypatch):
    """Every test gets its own cache root (MPSEARCH_CACHE holds every mpsearch cache): no test sees another's
    cached tables, and none writes to the user's ~/.cache/mpsearch."""
    monkeypatch.setenv("MPSEARCH_CACHE", str(tmp_path / "mpsearch-cache"))


@pytest.fixture
def digits():
    """A fresh copy of the digits CNN with its calibration and test splits (tests may modify it)."""
    return load_example("digits-cnn")


@pytest.fixture(scope="session")
def digits_shared():
    """One copy shared by read-only tests (loading is cheap; sharing keeps session fixtures possible)."""
    return load_example("digits-cnn")


@pytest.fixture(scope="session")
def digits_sensitivity(digits_shared):
    """One Hessian sensitivity table for the digits CNN, reused by every budget (as `plan` allows)."""
    return mpsearch.sensitivity(digits_shared.model, digits_shared.calibration, seed=0)


class TinyNet(nn.Module):
    """~300 parameters: small enough for an exact Hessian."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3)
        self.fc1 = nn.Linear(4 * 6, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(torch.tanh(self.conv(x)).flatten(1))))


@pytest.fixture(scope="session")
def tiny():
    """TinyNet trained briefly on a learnable rule, so its loss sits near a minimum (traces > 0)."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = TinyNet()
    x = torch.randn(64, 2, 8, generator=g)
    y = (x[:, 0, :4].sum(1) > 0).long() + (x[:, 1, 4:].sum(1) > 1).long()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x, y
