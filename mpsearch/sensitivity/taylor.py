"""Gradient-based sensitivities from one forward and a few backward passes per batch.

* ``fisher`` — second-order Taylor with the Fisher as Hessian proxy: Ω = ½ Σ_i F_ii ΔW_i². With
  labels F is the empirical Fisher (squared per-sample gradients of the task loss); label-free
  objectives have zero gradient at the FP point, so there F is the model's own Fisher (the GGN of
  KL/MSE), from exact output columns or Rademacher output probes.
* ``taylor`` — first order: Ω = |Σ_x δ_x · (Y_q − Y)|, i.e. |g·ΔW| for a weight-only choice (useful
  away from an optimum; ≈ 0 for label-free objectives at FP — prefer ``fisher`` there).
* ``output`` — NVIDIA ModelOpt auto_quantize's score: Ω = ½ Σ (∂L/∂Y)² (Y_q − Y)² at each site's
  output Y, with Y_q the output with the site's weight and input activation quantized.

For a `WEIGHT:ACT` choice, ``fisher`` adds the output-side score of the activation perturbation to
the weight-side term, so the choice is scored on both sides. Per-sample values give each Ω its
standard error over calibration samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..activations import calibrate_choices
from ..data import CalibrationData, primary_output
from ..errors import UsageError
from ..formats import Choice
from ..model import Site, call_model, eval_mode
from ..rounding import rounded
from ._base import Estimator, SensitivityTable, register_estimator, table_from_samples
from ._curvature import curvature_for
from ._persample import SiteTap, Taps, Unsupported
from .measured import micro_batches


def _columns(objective, out: torch.Tensor, batch, share: float, n: int, fisher: str, gen, probes: int):
    """Output cotangents whose pulled-back per-sample gradients give the Fisher: list of (u, weight)."""
    if fisher == "empirical":
        g = torch.autograd.grad(objective.batch(out, batch) * share, out, retain_graph=True)[0]
        return [(g * math.sqrt(n), 1.0)]
    curv = curvature_for(objective)(out, share)
    if curv.exact_columns:
        return [(curv.column(k), 1.0) for k in range(curv.exact_columns)]
    return [(curv.sample(gen), 1.0 / probes) for _ in range(probes)]


def _quantized_output(tap: SiteTap, choice: Choice, weight_only: bool = False) -> torch.Tensor:
    """The site's output with its weight (and, unless `weight_only`, input activation) quantized."""
    x = tap.inp
    if choice.act is not None and tap.kind != "embedding":
        x = choice.act.act_quantize(x, tap.act_params[choice.act.name])  # the static scale `apply` uses
    w = tap.weight.detach() if weight_only else rounded(tap.weight, choice.weight, tap.site.layout)
    with torch.no_grad():
        return tap.forward_with(x, w)


@dataclass(eq=False)
class _GradientEstimator(Estimator):
    """Shared loop: per micro-batch, one forward with taps, then one backward per output column.
    `fisher`: empirical (squared per-sample loss gradients), true (the model's own Fisher), or auto (empirical
    with labels); `probes`: Rademacher output probes per micro-batch where the true Fisher is sampled;
    `micro_batch`: samples per forward, so memory is bounded by it, not by the number of samples."""

    needs: ClassVar[tuple[str, ...]] = ()  # which per-sample terms: "weight2" (ΣG²ΔW²), "out1", "out2"
    fisher: Literal["auto", "empirical", "true"] = "auto"
    max_samples: int = 512
    probes: int = 4
    micro_batch: int = 32

    def _fisher_mode(self, objective) -> str:
        mode = self.fisher
        if mode == "auto":
            mode = "empirical" if objective.needs_labels else "true"
        if mode == "true" and curvature_for(objective) is None:
            raise UsageError(f"objective {objective.name!r} has no Fisher form; pass fisher='empirical'")
        return mode

    def _combine(self, parts: dict[str, torch.Tensor], choices: list[Choice]) -> torch.Tensor:
        raise NotImplementedError

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.micro_batch < 1:  # checked when the settings are given, before any work
            raise UsageError(f"estimator {self.name!r} setting micro_batch must be a positive number of samples "
                             f"per forward, not {self.micro_batch}; try micro_batch=32")

    def _micro(self, model) -> int:
        static = getattr(model, "_mpsearch_static_batch", None)  # a static-batch .pt2 runs that many rows at most
        return min(self.micro_batch, static) if static else self.micro_batch

    def estimate(
        self, model, sites: list[Site], choices: list[Choice], data: CalibrationData, objective, seed: int = 0
    ) -> SensitivityTable:
        sub = data.sample(self.max_samples, seed)
        fisher = self._fisher_mode(objective) if self.name != "taylor" else "gradient"
        micro = self._micro(model)
        with eval_mode(model):
            params = [model.get_parameter(s.param) for s in sites]
            flags = [p.requires_grad for p in params]
            try:
                for p in params:
                    p.requires_grad_(True)
                acts = calibrate_choices(model, sub, sites, choices)
                with Taps(model, sites) as taps, torch.enable_grad():
                    samples = self._samples(model, taps, acts, micro_batches(sub, micro), choices, objective,
                                            fisher, sub.num_samples, torch.Generator().manual_seed(seed))
            except Unsupported as e:
                raise UsageError(
                    f"estimator {self.name!r} needs per-sample gradients, which this model's sites "
                    f"do not give ({e}); use --estimator hessian or measured"
                ) from e
            finally:
                for p, f in zip(params, flags, strict=False):
                    p.requires_grad_(f)
        per = torch.cat(samples, 1)  # (sites, samples, choices): each sample's share of Ω
        return table_from_samples(
            self.name, sites, choices, per, self._reduce,
            {**self.recorded_params(), "objective": objective.name, "fisher": fisher, "seed": seed},
        )

    def _samples(self, model, taps: Taps, acts, batches, choices, objective, fisher: str, n: int, gen):
        """Per micro-batch: one forward with taps, one backward per output column -> [(sites, samples, choices)]."""
        for t in taps.taps:
            t.act_params = acts.get(t.site.name, {})
        dw = [[rounded(t.weight, c.weight, t.site.layout) - t.weight.detach() for c in choices] for t in taps.taps]
        samples = []
        for b in batches:
            taps.reset(b.size)
            out = primary_output(call_model(model, b.x))
            taps.check()
            if fisher == "gradient":
                g = torch.autograd.grad(objective.batch(out, b) * (b.size / n), out, retain_graph=True)[0]
                cols = [(g, 1.0)]
            else:
                cols = _columns(objective, out, b, b.size / n, n, fisher, gen, self.probes)
            samples.append(self._batch(taps, cols, dw, choices, out))
            del out
        taps.reset()
        return samples

    def _batch(self, taps: Taps, cols, dw, choices, out) -> torch.Tensor:
        rows = taps.taps[0].out.shape[0]  # a static-batch .pt2 pads the micro-batch: its padding rows are cut below
        parts = {
            k: torch.zeros(len(taps.taps), rows, len(choices), dtype=torch.float64)
            for k in self.needs
        }
        diffs = {}
        if "out1" in self.needs or "out2" in self.needs or "act2" in self.needs:
            for i, t in enumerate(taps.taps):
                y = t.out.detach().float()
                if "act2" in self.needs:
                    diffs[i] = [
                        None
                        if c.act is None or t.kind == "embedding"
                        else (_quantized_output(t, c, weight_only=True).float() - y)
                        for c in choices
                    ]
                else:
                    diffs[i] = [_quantized_output(t, c).float() - y for c in choices]
        for u, wgt in cols:
            ds = taps.deltas(out, u)
            for i, (t, d) in enumerate(zip(taps.taps, ds, strict=False)):
                if "weight2" in self.needs:
                    sq = t.contract(d, [x.pow(2) for x in dw[i]], power=2)
                    parts["weight2"][i] += wgt * sq.double().cpu()
                for key, power in (("out1", 1), ("out2", 2), ("act2", 2)):
                    if key in self.needs:
                        dd = d.float().pow(power)
                        for j, df in enumerate(diffs[i]):
                            if df is not None:
                                parts[key][i, :, j] += (
                                    wgt * (dd * df.pow(power)).reshape(dd.shape[0], -1).sum(1).double().cpu()
                                )
        return self._combine(parts, choices)[:, : out.shape[0]]

    @staticmethod
    def _reduce(per: torch.Tensor) -> torch.Tensor:
        return per.sum(1)


@register_estimator("fisher", "taylor2")
class FisherTaylor(_GradientEstimator):
    """Ω = ½ Σ F_ii ΔW_i² (+ output-side activation term)."""

    name = "fisher"
    needs = ("weight2", "act2")

    def _combine(self, parts, choices):
        return 0.5 * (parts["weight2"] + parts["act2"])


@register_estimator("output", "auto_quantize")
class OutputFisher(_GradientEstimator):
    """ModelOpt-style Ω = ½ Σ (∂L/∂Y)² (Y_q − Y)² at each site's output."""

    name = "output"
    needs = ("out2",)

    def _combine(self, parts, choices):
        return 0.5 * parts["out2"]


@register_estimator("taylor", "taylor1")
class FirstOrderTaylor(_GradientEstimator):
    """Ω = |Σ_x δ_x·(Y_q − Y)| = |g·ΔW| for weight-only choices."""

    name = "taylor"
    needs = ("out1",)

    def _combine(self, parts, choices):
        return parts["out1"]

    @staticmethod
    def _reduce(per):
        return per.sum(1).abs()
