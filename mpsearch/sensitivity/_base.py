"""The estimator contract, the `SensitivityTable` it returns, and the estimator registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd
import torch
from torch import nn

from ..data import CalibrationData
from ..formats import Choice
from ..model import Site
from ..params import Plugin
from ..registry import Registry
from ..rounding import rounded


@dataclass
class SensitivityTable:
    """Predicted damage Ω per (site, choice) with its standard error, and how it was made.

    `frame` columns: site, format, omega, omega_se. `site_info` holds per-site by-products
    (e.g. Hessian trace and its standard error, probes used).
    """

    frame: pd.DataFrame
    estimator: str
    settings: dict = field(default_factory=dict)
    site_info: pd.DataFrame | None = None
    model: str | None = None  # fingerprint of the model it was estimated on (None: not recorded)

    def check_fits(self, model_fingerprint: str, sites, choices) -> SensitivityTable:
        """Refuse a table made for another model, or one without a row for some (site, format) pair: a
        missing row would silently drop that option (or that site) from the search."""
        from ..errors import UsageError

        if self.model is not None and self.model != model_fingerprint:
            raise UsageError("the given sensitivity table was estimated on another model (fingerprints differ); "
                             "estimate it on this model with mpsearch.sensitivity(model, data)")
        have = set(zip(self.frame.site, self.frame.format, strict=True))
        missing = [f"{s.name}/{c.name}" for s in sites for c in choices if (s.name, c.name) not in have]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise UsageError(f"the given sensitivity table has no rows for {', '.join(missing[:5])}{more}; "
                             "estimate it for these sites and formats")
        return self

    def omega(self, site: str, choice: str) -> float:
        row = self.frame[(self.frame.site == site) & (self.frame.format == choice)]
        return float(row.omega.iloc[0])

    def pivot(self) -> pd.DataFrame:
        """site × format matrix of Ω, for reading."""
        return self.frame.pivot(index="site", columns="format", values="omega")

    def to_dict(self) -> dict:
        return {"schema": 1, "estimator": self.estimator, "settings": self.settings,
                "frame": self.frame.to_dict(orient="list"),
                "site_info": None if self.site_info is None else self.site_info.to_dict(orient="list"),
                "model": self.model}

    @classmethod
    def from_dict(cls, d: dict) -> SensitivityTable:
        info = d.get("site_info")
        return cls(pd.DataFrame(d["frame"]), d["estimator"], d.get("settings", {}),
                   None if info is None else pd.DataFrame(info), d.get("model"))


@dataclass(eq=False)
class Estimator(Plugin, ABC):
    """Scores Ω(site, choice). Subclasses are dataclasses whose fields are the settings (see `mpsearch.params`);
    `progress` (a tqdm bar; None: only on a terminal) is everyone's and does not change the numbers."""

    kind: ClassVar[str] = "estimator"
    variant_of: ClassVar[str | None] = None  # set when it is another estimator with other defaults (autotune skips it)
    progress: bool | None = None

    def recorded_params(self) -> dict:
        """The settings that change the numbers (all but `progress`): the cache key and the plan's provenance."""
        return {k: v for k, v in self.get_params().items() if k != "progress"}

    @abstractmethod
    def estimate(
        self,
        model: nn.Module,
        sites: list[Site],
        choices: list[Choice],
        data: CalibrationData,
        objective,
        seed: int = 0,
    ) -> SensitivityTable: ...


_REGISTRY: Registry[type[Estimator]] = Registry("estimator")
register_estimator = _REGISTRY.register  # @register_estimator("name", "alias", ...)
estimator_names = _REGISTRY.names


def get_estimator(name: str | Estimator, **settings) -> Estimator:
    if isinstance(name, Estimator):
        return name
    return _REGISTRY.create(name, **settings)


def table_from_samples(name: str, sites: list[Site], choices: list[Choice], per: torch.Tensor, reduce,
                       settings: dict) -> SensitivityTable:
    """A table from per-sample contributions `per` (sites, samples, choices) whose sum is Ω.

    Ω = reduce(per); its standard error is that of a sum of n i.i.d. terms, √n · std over samples.
    """
    om = reduce(per)
    n = per.shape[1]
    se = per.std(1) * n ** 0.5 if n > 1 else torch.zeros_like(om)
    rows = [{"site": s.name, "format": c.name, "omega": float(om[i, j]), "omega_se": float(se[i, j])}
            for i, s in enumerate(sites) for j, c in enumerate(choices)]
    return SensitivityTable(pd.DataFrame(rows), name, settings)


def weight_perturbation(model: nn.Module, sites: list[Site], choices: list[Choice]) -> pd.DataFrame:
    """‖Q_f(W) − W‖² for every (site, choice): the factor every second-order estimator multiplies by."""
    rows = []
    with torch.no_grad():
        for s in sites:
            p = model.get_parameter(s.param)
            w = p.detach()
            for c in choices:
                d = (rounded(p, c.weight, s.layout) - w).float()  # the active rounding: Ω for the weights that ship
                rows.append({"site": s.name, "format": c.name, "dw2": float(d.pow(2).sum())})
    return pd.DataFrame(rows)
