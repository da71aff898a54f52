"""Search contract: a `SearchProblem` of tables and limits in, a `Solution` out; searchers by name."""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd

from ..budget import format_metric, within
from ..errors import InfeasibleBudget, UsageError
from ..params import Plugin
from ..registry import Registry

PAIRWISE_COLUMNS = ["site_a", "format_a", "site_b", "format_b", "omega"]


@dataclass
class Solution:
    """What a searcher found. `objective` is the predicted objective of `assignments` (the problem's
    aggregate of Ω plus pairwise terms); `bound` is a proven lower bound on it (= objective when
    optimal; NaN when the searcher proves nothing). `measured` is the evaluated loss of the returned
    plan when the searcher measured it; `history` one row per candidate it measured or tried; `info`
    a searcher's summary of what it measured and why it stopped (empty when it has none)."""

    assignments: dict[str, str]
    status: str
    objective: float
    bound: float
    seconds: float
    totals: dict[str, float] = field(default_factory=dict)
    solver: str = ""
    measured: float | None = None
    history: pd.DataFrame | None = None
    info: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """Relative optimality gap (objective − bound) / |objective|; 0 when proven optimal."""
        if math.isnan(self.bound):
            return math.nan
        return max(0.0, self.objective - self.bound) / max(abs(self.objective), 1e-300)


def check_feasible(table: pd.DataFrame, limits: dict[str, float], ref=None) -> None:
    """Each budget alone must admit the cheapest format at every site; else say how far off it is.

    With the model's `Reference` the message speaks the budget's own terms: bits per weight, and
    whole-model totals (the site limit plus what no choice changes, e.g. 16-bit biases)."""
    names = {"bytes": "memory", "bits": "bits", "bops": "bops", "latency": "latency", "energy": "energy"}
    for col, limit in limits.items():
        cheapest = float(table.groupby("site", sort=False)[col].min().sum())
        if within({col: cheapest}, {col: limit}):
            continue
        metric = names.get(col, col)
        what = "every site at its cheapest format"
        if ref is not None and col == "bits" and ref.weights:
            budget, least = f"{limit / ref.weights:.3f} bits/weight", f"{cheapest / ref.weights:.3f} bits/weight"
            what = "averaged over the site weights, " + what  # bits budgets leave the 16-bit rest out
        else:
            fixed = ref.fixed.get(col, 0.0) if ref is not None else 0.0
            budget, least = format_metric(metric, limit + fixed), format_metric(metric, cheapest + fixed)
            if fixed:
                what += f", plus {format_metric(metric, fixed)} outside the sites"
        raise InfeasibleBudget(f"the {metric} budget cannot be met: it allows {budget} but the smallest "
                               f"achievable is {least} ({what}); raise the budget or allow smaller formats")


@dataclass(frozen=True)
class Aggregate:
    """How per-site damage combines into one objective: `sum` (additive, HAWQ), `lp` with p > 1
    ((Σ Ω^p)^(1/p): penalizes one badly hurt site more than many mildly hurt ones) or `max`
    (the worst site, as exllamav2's exponent sweep tends to at large p)."""

    kind: str = "sum"
    p: float = 1.0

    @classmethod
    def parse(cls, text: str | Aggregate | None) -> Aggregate:
        if text is None:
            return cls()
        if isinstance(text, Aggregate):
            return text
        s = str(text).strip().lower().replace(" ", "")
        if s in ("sum", "l1"):
            return cls()
        if s in ("max", "linf", "inf"):
            return cls("max", math.inf)
        m = re.fullmatch(r"l(?:p[:=]?)?(\d+(?:\.\d*)?)", s)
        if m and float(m.group(1)) > 1:
            return cls("lp", float(m.group(1)))
        raise UsageError(f"unknown objective aggregate {text!r}; use sum, max, or lp:P with P > 1 (e.g. l2, lp:3)")

    def per_site(self, omega: np.ndarray) -> np.ndarray:
        """The per-site terms the ILP sums: Ω, or max(Ω, 0)^p for Lp (damage below zero is no damage)."""
        if self.kind == "lp":
            return np.clip(omega, 0, None) ** self.p
        return omega

    def combine(self, omega: Iterable[float]) -> float:
        v = np.asarray(list(omega), dtype=float)
        if self.kind == "max":
            return float(v.max()) if len(v) else 0.0
        if self.kind == "lp":
            return float(self.per_site(v).sum() ** (1 / self.p))
        return float(v.sum())

    def from_solver(self, value: float) -> float:
        """Map the ILP's objective (Σ Ω^p for Lp) back to the aggregate's scale."""
        if self.kind == "lp" and not math.isnan(value):
            return max(value, 0.0) ** (1 / self.p)
        return value

    def __str__(self) -> str:
        return {"sum": "sum", "max": "max"}.get(self.kind, f"lp:{self.p:g}")


@dataclass
class SearchProblem:
    """`table`: one row per (site, format) with `omega` and one column per cost metric.
    `limits`: {cost column: upper bound on its sum over sites}. `ties`: groups of sites that must
    share one format. `pairwise`: rows (site_a, format_a, site_b, format_b, omega) of interaction terms.
    `aggregate`: how per-site Ω combine (`sum`, `max`, `lp:P`). `evaluate`: optional measured loss
    of an assignment (sites it does not name stay unquantized), for searchers that measure. `confirm`:
    optional loss on samples `evaluate` never sees (held-back calibration data): the measured search
    keeps its plan over the proxy's only if it measures better there too (selection noise does not)."""

    table: pd.DataFrame
    limits: dict[str, float]
    ties: list[list[str]] = field(default_factory=list)
    pairwise: pd.DataFrame | None = None
    evaluate: Callable[[dict[str, str]], float] | None = None
    seed: int = 0
    aggregate: str | Aggregate = "sum"
    confirm: Callable[[dict[str, str]], float] | None = None

    def __post_init__(self) -> None:
        need = {"site", "format", "omega", *self.limits}
        missing = need - set(self.table.columns)
        if missing:
            raise UsageError(f"the search table lacks column(s) {sorted(missing)}; it has {list(self.table.columns)}")
        if self.table.duplicated(["site", "format"]).any():
            raise UsageError("the search table has duplicate (site, format) rows; give one row per pair")
        bad = [c for c in ["omega", *self.limits] if not np.isfinite(self.table[c].to_numpy(float)).all()]
        if bad:
            raise UsageError(f"the search table has NaN or infinite values in {bad}; fill or drop those rows")
        self.aggregate = Aggregate.parse(self.aggregate)
        self.limits = {k: float(v) for k, v in self.limits.items()}
        if self.pairwise is not None:
            lack = set(PAIRWISE_COLUMNS) - set(self.pairwise.columns)
            if lack:
                raise UsageError(f"the pairwise table lacks column(s) {sorted(lack)}; it needs {PAIRWISE_COLUMNS}")
            if len(self.pairwise) and self.aggregate.kind != "sum":
                raise UsageError(f"pairwise terms add to a sum; they cannot combine with the {self.aggregate} "
                                 "aggregate (use aggregate='sum' or drop the pairwise table)")

    @cached_property
    def sites(self) -> list[str]:
        return list(dict.fromkeys(self.table.site))

    @cached_property
    def formats(self) -> dict[str, list[str]]:
        """site -> its candidate formats, in table order."""
        out: dict[str, list[str]] = {s: [] for s in self.sites}
        for s, f in zip(self.table.site, self.table.format):
            out[s].append(f)
        return out

    @cached_property
    def _rows(self) -> dict[tuple[str, str], np.ndarray]:
        cols = ["omega", *self.limits]
        vals = self.table[cols].to_numpy(float)
        return {(s, f): vals[i] for i, (s, f) in enumerate(zip(self.table.site, self.table.format))}

    @cached_property
    def _pair_terms(self) -> dict[tuple[str, str, str, str], float]:
        out: dict[tuple[str, str, str, str], float] = {}
        if self.pairwise is None:
            return out
        for r in self.pairwise[PAIRWISE_COLUMNS].itertuples(index=False):
            key = (r.site_a, r.format_a, r.site_b, r.format_b)
            out[key] = out.get(key, 0.0) + float(r.omega)
        return out

    def row(self, site: str, fmt: str) -> np.ndarray:
        try:
            return self._rows[(site, fmt)]
        except KeyError:
            raise UsageError(f"({site!r}, {fmt!r}) is not a row of the search table") from None

    def totals(self, assignments: dict[str, str]) -> dict[str, float]:
        """Σ over sites of omega and every limited column for an assignment."""
        tot = sum((self.row(s, f) for s, f in assignments.items()), np.zeros(1 + len(self.limits)))
        return {c: float(v) for c, v in zip(["omega", *self.limits], tot)}

    def fits(self, assignments: dict[str, str]) -> bool:
        return within(self.totals(assignments), self.limits)

    def pairwise_sum(self, assignments: dict[str, str]) -> float:
        terms = self._pair_terms
        if not terms:
            return 0.0
        return sum(v for (sa, fa, sb, fb), v in terms.items()
                   if assignments.get(sa) == fa and assignments.get(sb) == fb)

    def predicted(self, assignments: dict[str, str]) -> float:
        """The objective the ILP minimizes, for any complete assignment: aggregate of Ω + pairwise terms."""
        per_site = (self.row(s, f)[0] for s, f in assignments.items())
        return self.aggregate.combine(per_site) + self.pairwise_sum(assignments)

    @cached_property
    def groups(self) -> list[tuple[list[str], list[str]]]:
        """Tie groups merged where they overlap, each with the formats all its sites offer (table order);
        sites in no tie are groups of one. Every site is in exactly one group."""
        parent = {s: s for s in self.sites}

        def find(s: str) -> str:
            while parent[s] != s:
                parent[s] = parent[parent[s]]
                s = parent[s]
            return s

        for group in self.ties:
            unknown = [s for s in group if s not in parent]
            if unknown:
                raise UsageError(f"tie group names unknown site(s) {unknown}; tie sites of this model only")
            for s in group[1:]:
                parent[find(s)] = find(group[0])
        members: dict[str, list[str]] = {}
        for s in self.sites:
            members.setdefault(find(s), []).append(s)
        out = []
        for sites in members.values():
            common = [f for f in self.formats[sites[0]] if all(f in self.formats[s] for s in sites[1:])]
            if not common:
                raise InfeasibleBudget(f"tied sites {sites} share no candidate format; give them a common format "
                                       "or untie them")
            out.append((sites, common))
        return out

    def with_limits(self, limits: dict[str, float]) -> SearchProblem:
        """The same problem under other limits (tables and caches are shared, not copied)."""
        new = SearchProblem.__new__(SearchProblem)
        new.__dict__.update(self.__dict__)
        new.limits = {k: float(v) for k, v in limits.items()}
        new.__dict__.pop("_rows", None)
        return new

    def check_feasible(self) -> None:
        check_feasible(self.table, self.limits)


@dataclass(eq=False)
class Searcher(Plugin, ABC):
    """Subclasses are dataclasses whose fields are the settings (see `mpsearch.params`); `aggregate`
    (sum, max, lp:P) is everyone's and overrides the problem's."""

    kind: ClassVar[str] = "search"
    aggregate: str | None = None

    def search_params(self) -> dict:
        """The settings the search function takes (all but `aggregate`, which `prepare` applies)."""
        return {k: v for k, v in self.get_params().items() if k != "aggregate"}

    def prepare(self, problem: SearchProblem) -> SearchProblem:
        """The problem with this searcher's aggregate, if it sets one."""
        if self.aggregate is None:
            return problem
        new = problem.with_limits(problem.limits)
        new.aggregate = Aggregate.parse(self.aggregate)
        if new.pairwise is not None and len(new.pairwise) and new.aggregate.kind != "sum":
            raise UsageError(f"pairwise terms add to a sum; they cannot combine with the {new.aggregate} aggregate")
        return new

    @abstractmethod
    def search(self, problem: SearchProblem) -> Solution: ...


_REGISTRY: Registry[type[Searcher]] = Registry("search")
register_searcher = _REGISTRY.register()
searcher_names = _REGISTRY.names


def get_searcher(name: str | Searcher, **settings) -> Searcher:
    if isinstance(name, Searcher):
        return name
    return _REGISTRY.create(name, **settings)
