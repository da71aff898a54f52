"""The cost-model contract and the cost table every search reads.

Every plan gets the target-independent costs: `bytes` (packed storage, scales included), `bits`
(the same in bits, for average-bit budgets) and `bops` (MACs × weight bits × activation bits, per
sample). A registered `CostModel` for a named accelerator adds `latency` and `energy` columns and
says which choices the target cannot run.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from typing import ClassVar

import pandas as pd
from torch import nn

from mpsearch.budget import Reference
from mpsearch.errors import UsageError
from mpsearch.formats import Choice, get_choice
from mpsearch.model import Site
from mpsearch.params import Plugin
from mpsearch.registry import Registry

log = logging.getLogger("mpsearch")

FULL = get_choice("bf16")  # the 16-bit reference every relative budget is measured against


def storage_costs(site: Site, choice: Choice) -> dict[str, float]:
    bits = site.layout.storage_bits(choice.weight, site.shape)
    return {
        "bits": float(bits),
        "bytes": float(math.ceil(bits / 8)),
        "bops": float(site.macs) * choice.weight.element_bits * choice.act_bits,
    }


class CostModel(Plugin, ABC):
    """Predicts per-(site, choice) costs on one target. `metrics` names the columns it adds. Settings are
    dataclass fields (see `mpsearch.params`), e.g. the analytical model's batch and seq_len."""

    kind: ClassVar[str] = "hardware"
    metrics: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def site_cost(self, site: Site, choice: Choice) -> dict[str, float]:
        """Costs for one site at one choice (e.g. {'latency': s, 'energy': J})."""

    def unsupported(self, choice: Choice) -> str | None:
        """Why the target cannot run `choice`, or None if it can."""
        return None

    def fixed_cost(self, model: nn.Module, sites: list[Site]) -> dict[str, float]:
        """Cost of everything outside the sites (it counts toward absolute budgets)."""
        return {}


_REGISTRY: Registry[type[CostModel]] = Registry("hardware", hint="(or a spec .toml file)")
register_cost_model = _REGISTRY.register()
cost_model_names = _REGISTRY.names


def supported(hardware: CostModel | None, choices: list[Choice]) -> list[Choice]:
    """The choices the target can run; warns naming the excluded ones, errors if none is left."""
    if hardware is None:
        return list(choices)
    keep, dropped = [], []
    for c in choices:
        why = hardware.unsupported(c)
        (dropped if why else keep).append((c, why))
    if dropped:
        names = ", ".join(c.name for c, _ in dropped)
        if not keep:
            raise UsageError(f"none of the formats can run on {hardware.name} ({names} are unsupported: "
                             f"{dropped[0][1]}); pass --formats that it supports "
                             f"(see `mpsearch hardware show {hardware.name}`)")
        log.warning("excluded on %s (unsupported): %s; e.g. %s", hardware.name, names, dropped[0][1])
    return [c for c, _ in keep]


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


def model_costs(model: nn.Module, sites: list[Site], assignments: dict[str, str],
                hardware: CostModel | None = None) -> pd.DataFrame:
    """Per-layer costs of one assignment, plus a `(fixed)` row for the non-site parameters and a `TOTAL`
    row: the whole-model bytes, BOPs, latency and energy on the target."""
    rows = [{"site": s.name, "format": get_choice(assignments[s.name]).name,
             **storage_costs(s, get_choice(assignments[s.name])),
             **(hardware.site_cost(s, get_choice(assignments[s.name])) if hardware else {})} for s in sites]
    df = pd.DataFrame(rows)
    fixed = reference(model, sites, hardware).fixed
    cols = df.columns[2:]
    df.loc[len(df)] = {"site": "(fixed)", "format": "16-bit", **{c: fixed.get(c, 0.0) for c in cols}}
    df.loc[len(df)] = {"site": "TOTAL", "format": "", **{c: float(df[c].sum()) for c in cols}}
    return df


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
