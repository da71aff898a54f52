"""Search contract: a `SearchProblem` of tables and limits in, a `Solution` out; searchers by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from ..errors import InfeasibleBudget, UsageError


@dataclass
class Solution:
    """What a searcher found. `bound` is the proven lower bound on the objective (= objective when optimal)."""

    assignments: dict[str, str]
    status: str
    objective: float
    bound: float
    seconds: float
    totals: dict[str, float] = field(default_factory=dict)
    solver: str = ""


def check_feasible(table: pd.DataFrame, limits: dict[str, float]) -> None:
    """Each budget alone must admit the cheapest format at every site; else say how far off it is."""
    from ..budget import format_metric

    names = {"bytes": "memory", "bits": "bits", "bops": "bops", "latency": "latency", "energy": "energy"}
    for col, limit in limits.items():
        cheapest = table.groupby("site", sort=False)[col].min()
        if cheapest.sum() > limit * (1 + 1e-9) + 1e-12:
            metric = names.get(col, col)
            raise InfeasibleBudget(
                f"the {metric} budget cannot be met: the sites would need at most {format_metric(metric, limit)} "
                f"but the smallest achievable is {format_metric(metric, float(cheapest.sum()))} "
                "(every site at its cheapest format); raise the budget or allow smaller formats"
            )


@dataclass
class SearchProblem:
    """`table`: one row per (site, format) with `omega` and one column per cost metric.
    `limits`: {cost column: upper bound on its sum over sites}. `ties`: groups of sites that must
    share one format. `pairwise`: rows (site_a, format_a, site_b, format_b, omega) of interaction terms.
    `evaluate`: optional measured loss of an assignment, for searchers that measure."""

    table: pd.DataFrame
    limits: dict[str, float]
    ties: list[list[str]] = field(default_factory=list)
    pairwise: pd.DataFrame | None = None
    evaluate: Callable[[dict[str, str]], float] | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        need = {"site", "format", "omega", *self.limits}
        missing = need - set(self.table.columns)
        if missing:
            raise UsageError(f"the search table lacks column(s) {sorted(missing)}; it has {list(self.table.columns)}")
        if self.table.duplicated(["site", "format"]).any():
            raise UsageError("the search table has duplicate (site, format) rows; give one row per pair")

    @property
    def sites(self) -> list[str]:
        return list(dict.fromkeys(self.table.site))

    def totals(self, assignments: dict[str, str]) -> dict[str, float]:
        """Σ over sites of omega and every limited column for an assignment."""
        idx = self.table.set_index(["site", "format"])
        rows = idx.loc[list(assignments.items())]
        cols = ["omega", *self.limits]
        return {c: float(rows[c].sum()) for c in cols}

    def check_feasible(self) -> None:
        check_feasible(self.table, self.limits)


class Searcher(ABC):
    name: str = ""

    def __init__(self, **settings):
        self.settings = settings

    @abstractmethod
    def search(self, problem: SearchProblem) -> Solution: ...


_REGISTRY: dict[str, type[Searcher]] = {}


def register_searcher(cls: type[Searcher]) -> type[Searcher]:
    _REGISTRY[cls.name] = cls
    return cls


def searcher_names() -> list[str]:
    return sorted(_REGISTRY)


def get_searcher(name: str | Searcher, **settings) -> Searcher:
    if isinstance(name, Searcher):
        return name
    if name not in _REGISTRY:
        raise UsageError(f"unknown search {name!r}; choose one of {', '.join(searcher_names())}")
    return _REGISTRY[name](**settings)
