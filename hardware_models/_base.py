"""The cost-model contract and the cost table every search reads.

Every plan gets the target-independent costs: `bytes` (packed storage, scales included), `bits`
(the same in bits, for average-bit budgets) and `bops` (MACs × weight bits × activation bits, per
sample). A registered `CostModel` for a named accelerator adds `latency` and `energy` columns and
says which choices the target cannot run.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import pandas as pd
from torch import nn

from mpsearch.budget import Reference
from mpsearch.errors import UsageError
from mpsearch.formats import Choice, get_choice
from mpsearch.model import Site

FULL = get_choice("bf16")  # the 16-bit reference every relative budget is measured against


def storage_costs(site: Site, choice: Choice) -> dict[str, float]:
    bits = choice.weight.storage_bits(site.shape)
    return {
        "bits": float(bits),
        "bytes": float(math.ceil(bits / 8)),
        "bops": float(site.macs) * choice.weight.element_bits * choice.act_bits,
    }


class CostModel(ABC):
    """Predicts per-(site, choice) costs on one target. `metrics` names the columns it adds."""

    name: str = ""
    metrics: tuple[str, ...] = ()

    @abstractmethod
    def site_cost(self, site: Site, choice: Choice) -> dict[str, float]:
        """Costs for one site at one choice (e.g. {'latency': s, 'energy': J})."""

    def unsupported(self, choice: Choice) -> str | None:
        """Why the target cannot run `choice`, or None if it can."""
        return None

    def fixed_cost(self, model: nn.Module, sites: list[Site]) -> dict[str, float]:
        """Cost of everything outside the sites (it counts toward absolute budgets)."""
        return {}


_REGISTRY: dict[str, type[CostModel]] = {}


def register_cost_model(cls: type[CostModel]) -> type[CostModel]:
    _REGISTRY[cls.name] = cls
    return cls


def cost_model_names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str | CostModel | None, **kwargs) -> CostModel | None:
    """The cost model registered as `name` (None: storage costs only)."""
    if name is None or isinstance(name, CostModel):
        return name
    if name not in _REGISTRY:
        known = ", ".join(cost_model_names()) or "none installed"
        raise UsageError(f"unknown hardware {name!r}; choose one of: {known}")
    return _REGISTRY[name](**kwargs)


def cost_table(sites: list[Site], choices: list[Choice], hardware: CostModel | None = None) -> pd.DataFrame:
    """One row per (site, choice): bytes, bits, bops, and the hardware model's metrics."""
    rows = []
    for s in sites:
        for c in choices:
            row = {"site": s.name, "format": c.name, **storage_costs(s, c)}
            if hardware is not None:
                row.update(hardware.site_cost(s, c))
            rows.append(row)
    return pd.DataFrame(rows)


def reference(model: nn.Module, sites: list[Site], hardware: CostModel | None = None) -> Reference:
    """Totals of the all-16-bit model and the fixed costs outside the sites."""
    site_params = {s.param for s in sites}
    other = sum(p.numel() for n, p in model.named_parameters() if n not in site_params)
    fixed = {"bytes": float(other * 2), "bits": 0.0, "bops": 0.0}
    if hardware is not None:
        fixed.update(hardware.fixed_cost(model, sites))
    full = cost_table(sites, [FULL], hardware)
    totals = {c: float(full[c].sum()) + fixed.get(c, 0.0) for c in full.columns if c not in ("site", "format")}
    return Reference(full=totals, fixed=fixed, weights=sum(s.numel for s in sites))
