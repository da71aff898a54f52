"""Measured sensitivity: quantize one site at one choice, measure the objective change (AIMET-style).

Ω(site, f) = L(model with only `site` quantized to f) − L(FP), on the calibration data. It is the
direct reference the cheaper estimators are judged against, and with the label-free KL objective on
distilled inputs it is ZeroQ's sensitivity. The data are measured in micro-batches so that each Ω
carries its standard error over samples.
"""

from __future__ import annotations

from contextlib import contextmanager

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..apply import quantized
from ..data import Batch, CalibrationData, _slice
from ..errors import UsageError
from ..formats import Choice
from ..model import Site, _module_sites
from ..objectives import measure
from ._base import Estimator, SensitivityTable, register_estimator


@contextmanager
def site_quantized(model: nn.Module, site: Site, choice: Choice):
    """Temporarily quantize one site's weight, and its input activation when `choice.act` is set."""
    handle = None
    if choice.act is not None:
        found = _module_sites(model).get(site.param)
        if found is None:
            raise UsageError(
                f"activation choice {choice.name!r} needs site {site.name!r} to be a module; "
                "load the model as an nn.Module (not a .pt2 graph)"
            )
        act = choice.act

        def pre(module, args):
            return (act.quantize(args[0]), *args[1:])

        handle = found[1].register_forward_pre_hook(pre)
    try:
        with quantized(model, {site.name: choice.name}):
            yield model
    finally:
        if handle is not None:
            handle.remove()


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
class Measured(Estimator):
    """Settings: max_samples (512), micro_batch (32: the unit of the standard error)."""

    name = "measured"

    def estimate(
        self, model, sites: list[Site], choices: list[Choice], data: CalibrationData, objective, seed: int = 0
    ) -> SensitivityTable:
        max_samples = int(self.settings.get("max_samples", 512))
        micro = int(self.settings.get("micro_batch", 32))
        sub = micro_batches(data.take(max_samples), micro)
        parts = [CalibrationData([b]) for b in sub]
        w = torch.tensor([b.size for b in sub], dtype=torch.float64)
        w /= w.sum()
        sign = -1.0 if objective.higher_is_better else 1.0
        fp = _per_batch(model, parts, objective)
        rows = []
        bar = tqdm(
            total=len(sites) * len(choices),
            desc="measured sensitivity",
            unit="eval",
            leave=False,
            disable=None if self.settings.get("progress") is None else not self.settings["progress"],
        )
        try:
            for s in sites:
                for c in choices:
                    with site_quantized(model, s, c):
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
            {"objective": objective.name, "max_samples": max_samples, "micro_batch": micro, "seed": seed},
        )
