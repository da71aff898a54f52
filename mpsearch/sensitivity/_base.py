"""The estimator contract, the `SensitivityTable` it returns, and the estimator registry."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import pandas as pd
import torch
from torch import nn

from ..data import CalibrationData
from ..errors import UsageError
from ..formats import Choice
from ..model import Site
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

    def omega(self, site: str, choice: str) -> float:
        row = self.frame[(self.frame.site == site) & (self.frame.format == choice)]
        return float(row.omega.iloc[0])

    def pivot(self) -> pd.DataFrame:
        """site × format matrix of Ω, for reading."""
        return self.frame.pivot(index="site", columns="format", values="omega")

    def to_dict(self) -> dict:
        return {"schema": 1, "estimator": self.estimator, "settings": self.settings,
                "frame": self.frame.to_dict(orient="list"),
                "site_info": None if self.site_info is None else self.site_info.to_dict(orient="list")}

    @classmethod
    def from_dict(cls, d: dict) -> SensitivityTable:
        info = d.get("site_info")
        return cls(pd.DataFrame(d["frame"]), d["estimator"], d.get("settings", {}),
                   None if info is None else pd.DataFrame(info))


class Estimator(ABC):
    """Scores Ω(site, choice). Constructor keyword arguments are the estimator's settings."""

    name: str = ""
    options: tuple[str, ...] = ()  # the settings it reads (besides `progress`); others are refused, not ignored
    variant_of: str | None = None  # set when it is another estimator with other defaults (autotune skips it)

    def __init__(self, **settings):
        unknown = sorted(set(settings) - set(self.options) - {"progress"})
        if unknown:
            takes = ", ".join(sorted(self.options)) or "no settings"
            raise UsageError(f"estimator {self.name!r} has no setting {unknown[0]!r}; it takes {takes}")
        self.settings = settings

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


_REGISTRY: Registry[Estimator] = Registry("estimator")
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
                d = (rounded(p, c.weight) - w).float()  # the active rounding: Ω for the weights that ship
                rows.append({"site": s.name, "format": c.name, "dw2": float(d.pow(2).sum())})
    return pd.DataFrame(rows)
