"""Measured sensitivity: quantize one site at one choice, measure the objective change (AIMET-style).

Ω(site, f) = L(model with only `site` quantized to f) − L(FP), on the calibration data. It is the
direct reference the cheaper estimators are judged against, and with the label-free KL objective on
distilled inputs it is ZeroQ's sensitivity. The data are measured in micro-batches so that each Ω
carries its standard error over samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..activations import calibrate_choices
from ..data import Batch, CalibrationData, _slice
from ..formats import Choice
from ..model import Site
from ..objectives import measure
from ..objectives import sign as direction
from ..quantize import quantized
from ._base import Estimator, SensitivityTable, register_estimator


def micro_batches(data: CalibrationData, size: int) -> CalibrationData:
    """The same samples re-cut into batches of at most `size`."""
    out = []
    for b in data:
        for i in range(0, b.size, size):
            j = min(b.size, i + size)
            out.append(
                Batch(
                    _slice(b.x, i, j),
                    None if b.y is None else b.y[i:j],
                    None if b.ref is None else b.ref[i:j],
                )
            )
    return CalibrationData(out)


def _per_batch(model: nn.Module, parts: list[CalibrationData], objective) -> torch.Tensor:
    return torch.tensor([measure(model, p, [objective])[objective.name] for p in parts], dtype=torch.float64)


@register_estimator("measured")
@dataclass(eq=False)
class Measured(Estimator):
    """`micro_batch` samples are the unit of the standard error."""

    name = "measured"
    max_samples: int = 512
    micro_batch: int = 32

    def estimate(
        self, model, sites: list[Site], choices: list[Choice], data: CalibrationData, objective, seed: int = 0
    ) -> SensitivityTable:
        max_samples, micro = self.max_samples, self.micro_batch
        sub = micro_batches(data.sample(max_samples, seed), micro)
        parts = [CalibrationData([b]) for b in sub]
        w = torch.tensor([b.size for b in sub], dtype=torch.float64)
        w /= w.sum()
        sign = direction(objective)
        fp = _per_batch(model, parts, objective)
        # WEIGHT:ACT choices: the same calibrated per-tensor scales that `apply` will use
        acts = calibrate_choices(model, sub, sites, choices)
        rows = []
        bar = tqdm(
            total=len(sites) * len(choices),
            desc="measured sensitivity",
            unit="eval",
            leave=False,
            disable=None if self.progress is None else not self.progress,
        )
        try:
            for s in sites:
                for c in choices:
                    with quantized(model, {s.name: c.name}, acts):
                        d = sign * (_per_batch(model, parts, objective) - fp)
                    om = float((w * d).sum())
                    # weighted standard error of the mean of per-micro-batch differences
                    se = float(((w**2 * (d - om) ** 2).sum() * len(d) / max(len(d) - 1, 1)).sqrt())
                    rows.append({"site": s.name, "format": c.name, "omega": om, "omega_se": se})
                    bar.update(1)
        finally:
            bar.close()
        return SensitivityTable(
            pd.DataFrame(rows),
            self.name,
            {**self.recorded_params(), "objective": objective.name, "seed": seed},
        )
