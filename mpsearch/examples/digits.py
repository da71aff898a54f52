"""The bundled real example: a small CNN trained on scikit-learn's handwritten digits (8×8, 10 classes).

`load()` returns the trained model and its fixed calibration / test splits. The weights and split
ship in the package; `python -m mpsearch.examples.train_digits` regenerates both deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "digits_cnn.safetensors"
SPLIT = HERE / "digits_split.npz"


class DigitsCNN(nn.Module):
    """Three conv blocks with BatchNorm (so ZeroQ's data-free statistics exist) and a two-layer head."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),                                    # 8x8 -> 4x4
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),                                    # 4x4 -> 2x2
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * w * 4, 128), nn.ReLU(), nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as (N, 1, 8, 8) float32 in [0, 1] and int64 labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    return x, d.target.astype(np.int64)


@dataclass
class Example:
    model: nn.Module
    calibration: dict  # {'x', 'y'}: the split the planner may look at
    test: dict         # {'x', 'y'}: held out, for reporting only
    name: str = "digits-cnn"


def load() -> Example:
    return load_bundled(DigitsCNN(), WEIGHTS, "digits-cnn")


def load_bundled(model: nn.Module, weights: Path, name: str) -> Example:
    """A bundled digits model with its shipped weights, on the shared calibration / test split."""
    from safetensors.torch import load_file

    x, y = digits_arrays()
    split = np.load(SPLIT)
    model.load_state_dict(load_file(str(weights)))
    model.eval()

    def part(idx):
        return {"x": torch.from_numpy(x[idx]), "y": torch.from_numpy(y[idx])}

    return Example(model, part(split["calibration"]), part(split["test"]), name=name)
