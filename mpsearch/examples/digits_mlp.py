"""A small real model whose every mixed-precision assignment can be enumerated: a 6-layer MLP on
scikit-learn's handwritten digits, trained deterministically on the CPU in a few seconds.

It uses the bundled CNN's data split (`digits_split.npz`: 500 held-out test digits, 256 calibration
digits from the training part), so it sees the same data a planner of `digits-cnn` sees. Nothing is
downloaded and no weights ship: `load()` trains it (seeded, one thread, deterministic algorithms).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .digits import SPLIT, Example, digits_arrays


class DigitsMLP(nn.Module):
    def __init__(self, depth: int = 6, width: int = 48):
        super().__init__()
        dims = [64] + [width] * (depth - 1) + [10]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return h


@functools.cache
def _trained(depth: int, width: int, epochs: int, seed: int) -> dict[str, torch.Tensor]:
    x, y = digits_arrays()
    split = np.load(SPLIT)
    train = np.setdiff1d(np.arange(len(x)), split["test"])
    xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(seed)
        model = DigitsMLP(depth, width)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            order = torch.randperm(len(xt), generator=g)
            for i in range(0, len(xt), 64):
                idx = order[i: i + 64]
                loss = F.cross_entropy(model(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def load(depth: int = 6, width: int = 48, epochs: int = 30, seed: int = 0) -> Example:
    """The trained MLP (a fresh copy each call) with the digits calibration and test splits."""
    model = DigitsMLP(depth, width)
    model.load_state_dict(_trained(depth, width, epochs, seed))
    model.eval()
    x, y = digits_arrays()
    split = np.load(SPLIT)

    def part(idx):
        return {"x": torch.from_numpy(x[idx]), "y": torch.from_numpy(y[idx])}

    return Example(model, part(split["calibration"]), part(split["test"]), name=f"digits-mlp{depth}")
