"""A third enumerable real model, of another kind: a 1-D conv net that reads each 8×8 digit as a
sequence of 8 rows (8 features per step), with a two-layer head. Five sites (three Conv1d, two
Linear), so all 4⁵ int2/int3/int4/int8 assignments can be measured. The weights ship
(`digits_seq.safetensors`, ~40 KB); `python -m mpsearch.examples.train_digits --model seq`
regenerates them deterministically on the same split as the digits CNN.
"""

from __future__ import annotations

import torch
from torch import nn

from .digits import HERE, Example, load_bundled

WEIGHTS = HERE / "digits_seq.safetensors"


class DigitsSeq(nn.Module):
    """Conv1d over the row sequence (channels = the 8 pixels of a row), pooled twice, then an MLP head."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv1d(8, w, 3, padding=1), nn.ReLU(),
            nn.Conv1d(w, w, 3, padding=1), nn.ReLU(),
            nn.MaxPool1d(2),                                   # 8 steps -> 4
            nn.Conv1d(w, w, 3, padding=1), nn.ReLU(),
            nn.MaxPool1d(2),                                   # 4 -> 2
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(2 * w, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = x.reshape(x.shape[0], 8, 8).transpose(1, 2)  # (N, row, col) -> (N, col features, row steps)
        return self.classifier(self.features(seq))


def load() -> Example:
    return load_bundled(DigitsSeq(), WEIGHTS, "digits-seq")
