"""The `Objective` contract: a differentiable per-batch score and its data-set mean."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from mpsearch.data import Batch, CalibrationData, primary_output
from mpsearch.errors import UsageError
from mpsearch.model import call_model, eval_mode
from mpsearch.params import Plugin
from mpsearch.registry import Registry


class Objective(Plugin, ABC):
    """How a (quantized) model is judged on data. Lower is better unless `higher_is_better`. The built-in
    objectives take no settings; one that does declares them as dataclass fields (see `mpsearch.params`)."""

    kind: ClassVar[str] = "objective"
    higher_is_better: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = False  # scores against the FP model's outputs (attach with with_reference)
    pooled: ClassVar[bool] = False  # a statistic of all tokens at once (a quantile, exp of a mean): see `values`/`pool`

    @abstractmethod
    def batch(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean score over one batch; differentiable where the estimators need it."""

    def values(self, out: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-token (or per-sample) values that `pool` reduces over the whole data set (pooled objectives)."""
        raise NotImplementedError

    def pool(self, values: torch.Tensor) -> float:
        """The data-set score from every batch's `values`, concatenated."""
        return float(values.mean())

    def __repr__(self) -> str:
        return self.name


_REGISTRY: Registry[type[Objective]] = Registry("objective")
register_objective = _REGISTRY.register()
objective_names = _REGISTRY.names


def get_objective(name: str | Objective) -> Objective:
    if isinstance(name, Objective):
        return name
    return _REGISTRY.create(name)


def sign(objective: str | Objective | bool) -> float:
    """+1 for a loss, -1 for a higher-is-better score: `sign * value` is always lower-is-better. The one
    place an objective's direction is read; every searcher, guard and front compares through it.
    A bool is a stored direction (`higher_is_better`, e.g. a saved front's)."""
    if isinstance(objective, bool):
        return -1.0 if objective else 1.0
    return -1.0 if get_objective(objective).higher_is_better else 1.0


def as_loss(objective: str | Objective | bool, value):
    """`value` (a float, array or Series) on a lower-is-better scale."""
    return sign(objective) * value


def better(objective: str | Objective | bool, a: float, b: float, tol: float = 1e-12) -> bool:
    """Whether score `a` is strictly better than `b` (by more than `tol`) under the objective's direction."""
    return as_loss(objective, a) < as_loss(objective, b) - tol


def default_objective(data: CalibrationData) -> Objective:
    """Task loss with labels; KL to the FP model's own outputs without (zero, with zero gradient, at FP)."""
    return get_objective("cross_entropy" if data.labelled else "kl")


def measure(model: nn.Module, data: CalibrationData, objectives: list[str | Objective]) -> dict[str, float]:
    """Sample-weighted means of several objectives from one forward pass per batch."""
    objs = [get_objective(o) for o in objectives]
    for o in objs:
        if o.needs_labels and not data.labelled:
            raise UsageError(f"objective {o.name!r} needs labels; give data with 'y' or use 'kl'")
        if o.needs_reference and not all(b.ref is not None for b in data):
            raise UsageError(f"objective {o.name!r} needs reference outputs: call data.with_reference(fp_model)")
    sums = [0.0] * len(objs)
    pooled: dict[int, list[torch.Tensor]] = {i: [] for i, o in enumerate(objs) if o.pooled}
    n = 0
    with eval_mode(model), torch.no_grad():
        for b in data:
            out = primary_output(call_model(model, b.x))
            for i, o in enumerate(objs):
                if o.pooled:
                    pooled[i].append(o.values(out, b).detach().float().reshape(-1).cpu())
                else:
                    sums[i] += float(o.batch(out, b)) * b.size
            n += b.size
    return {o.name: o.pool(torch.cat(pooled[i])) if o.pooled else sums[i] / n for i, o in enumerate(objs)}
