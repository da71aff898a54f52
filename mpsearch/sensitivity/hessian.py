"""Hessian-trace sensitivity (HAWQ-V2): Ω(site, f) = Tr(H_site)/n_site · ‖Q_f(W) − W‖².

Per-site traces come from shared Rademacher probes, Tr(H_ll) ≈ mean_v v_lᵀ(Hv)_l (Hutchinson), with
the Hessian-vector product by double backward over a gradient graph built once and reused by
every probe. Probing stops when every site's standard error is under `tol` of its mean, or at
`max_probes`. The standard errors go into the table as error bars.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import CalibrationData, primary_output
from ..formats import Choice
from ..model import Site, call_model
from ._base import Estimator, SensitivityTable, register_estimator, weight_perturbation


def data_loss(model: nn.Module, data: CalibrationData, objective) -> torch.Tensor:
    """The objective's sample-weighted mean over all of `data`, as one differentiable scalar."""
    n = data.num_samples
    total = None
    for b in data:
        term = objective.batch(primary_output(call_model(model, b.x)), b) * (b.size / n)
        total = term if total is None else total + term
    return total


class _Welford:
    """Running mean and variance per site (vectorized over sites)."""

    def __init__(self, k: int):
        self.n = 0
        self.mean = torch.zeros(k, dtype=torch.float64)
        self.m2 = torch.zeros(k, dtype=torch.float64)

    def add(self, x: torch.Tensor) -> None:
        self.n += 1
        d = x - self.mean
        self.mean += d / self.n
        self.m2 += d * (x - self.mean)

    @property
    def se(self) -> torch.Tensor:
        if self.n < 2:
            return torch.full_like(self.mean, math.inf)
        return (self.m2 / (self.n - 1) / self.n).sqrt()


def hutchinson_traces(
    model: nn.Module,
    params: list[torch.Tensor],
    loss_fn,
    *,
    tol: float = 0.05,
    min_probes: int = 8,
    max_probes: int = 200,
    seed: int = 0,
    progress: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per-parameter-block Hessian traces of `loss_fn()`: (trace, standard error, probes used)."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    stats = _Welford(len(params))
    bar = tqdm(total=max_probes, desc="hessian probes", unit="probe", leave=False,
               disable=None if progress is None else not progress)  # None: only on a terminal
    try:
        for _ in range(max_probes):
            vs = [
                (torch.randint(0, 2, p.shape, generator=gen, dtype=torch.int8) * 2 - 1).to(p.device, p.dtype)
                for p in params
            ]
            hv = torch.autograd.grad(grads, params, grad_outputs=vs, retain_graph=True)
            stats.add(torch.stack([(v * h).sum().double().cpu() for v, h in zip(vs, hv)]))
            bar.update(1)
            if stats.n >= min_probes:
                rel = stats.se / stats.mean.abs().clamp_min(1e-300)
                if bool(((rel <= tol) | (stats.se == 0)).all()):
                    break
    finally:
        bar.close()
    return stats.mean, stats.se, stats.n


@register_estimator("hessian", "hutchinson")
class HessianTrace(Estimator):
    """Settings: tol (relative standard error target, 0.05), min_probes, max_probes, max_samples."""

    name = "hessian"

    def estimate(self, model, sites: list[Site], choices: list[Choice], data: CalibrationData, objective,
                 seed: int = 0) -> SensitivityTable:
        tol = float(self.settings.get("tol", 0.05))
        max_samples = int(self.settings.get("max_samples", 512))
        sub = data.take(max_samples)
        params = [model.get_parameter(s.param) for s in sites]
        flags = {p: p.requires_grad for p in model.parameters()}
        try:
            for p in model.parameters():
                p.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)
            tr, se, n = hutchinson_traces(
                model, params, lambda: data_loss(model, sub, objective), tol=tol,
                min_probes=int(self.settings.get("min_probes", 8)),
                max_probes=int(self.settings.get("max_probes", 200)), seed=seed,
                progress=self.settings.get("progress"),
            )
        finally:
            for p, f in flags.items():
                p.requires_grad_(f)
        info = pd.DataFrame({
            "site": [s.name for s in sites], "params": [s.numel for s in sites],
            "trace": tr.numpy(), "trace_se": se.numpy(), "probes": n,
        })
        dw = weight_perturbation(model, sites, choices).merge(info[["site", "params", "trace", "trace_se"]])
        # A negative trace is noise or a non-convex direction at a non-minimum; HAWQ's Ω assumes ≥ 0.
        dw["omega"] = dw.trace.clip(lower=0) / dw.params * dw.dw2
        dw["omega_se"] = dw.trace_se / dw.params * dw.dw2
        frame = dw[["site", "format", "omega", "omega_se"]].reset_index(drop=True)
        return SensitivityTable(frame, self.name, {"tol": tol, "max_samples": max_samples, "seed": seed,
                                                   "objective": objective.name}, info)
