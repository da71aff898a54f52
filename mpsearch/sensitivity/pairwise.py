"""Inter-layer terms, measured: quantizing two sites together does not cost the sum of each alone.

Ω_ab(f_a, f_b) = L(a@f_a & b@f_b) − L(a@f_a) − L(b@f_b) + L(FP)   (CLADO; "Augmenting Hessians with
Inter-Layer Dependencies"), every other site unquantized. With per-site terms Ω_a = L(a@f_a) − L(FP)
the sum Σ Ω_a + Σ Ω_ab is exact for two sites and the second-order model of the loss for more;
`mpsearch.solve(..., pairwise=terms)` optimizes it exactly.

Pairs cost one measurement per format pair, so large models choose pairs: execution-order
neighbours first (they share an activation), then the pairs whose Cauchy–Schwarz bound
|Ω_ab| ≤ 2·sqrt(Ω_a·Ω_b) (a PSD quadratic's cross term) is largest.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable

import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from ..data import as_data
from ..errors import UsageError
from ..formats import get_choice
from ..model import Site

COLUMNS = ["site_a", "format_a", "site_b", "format_b", "omega"]


class CachedLoss:
    """A loss of (partial) assignments, each distinct assignment measured once; `measurements` counts them.
    Sites an assignment does not name stay unquantized, so `{}` is the FP model."""

    def __init__(self, fn: Callable[[dict[str, str]], float]):
        self.fn = fn
        self.cache: dict[frozenset, float] = {}

    def __call__(self, assignments: dict[str, str]) -> float:
        key = frozenset(assignments.items())
        if key not in self.cache:
            self.cache[key] = float(self.fn(dict(assignments)))
        return self.cache[key]

    def known(self, assignments: dict[str, str]) -> bool:
        return frozenset(assignments.items()) in self.cache

    @property
    def measurements(self) -> int:
        return len(self.cache)


class MeasuredLoss(CachedLoss):
    """L(assignment) = the objective on `data` with the named sites quantized in place (lower is better:
    a higher-is-better objective such as accuracy is negated). `acts`: calibrated activation parameters."""

    def __init__(self, model: nn.Module, data, objective=None, acts=None):
        from ..objectives import default_objective, get_objective, measure
        from ..objectives import sign as direction
        from ..quantize import quantized

        data = as_data(data)
        obj = get_objective(objective) if objective is not None else default_objective(data)
        if obj.needs_reference:
            data = data.with_reference(model)
        sign = direction(obj)
        self.model, self.data, self.objective = model, data, obj

        def fn(assignments: dict[str, str]) -> float:
            with quantized(model, assignments, acts, data):  # WEIGHT:ACT choices: stored or calibrated scales
                return sign * measure(model, data, [obj])[obj.name]

        super().__init__(fn)


def candidates_of(site_names: list[str], assignments_or_choices) -> dict[str, list[str]]:
    """site -> the (non-16-bit) formats to measure: from a plan {site: format}, {site: [formats]},
    or one list of choices for every site. 16-bit choices are skipped: their terms are ~0."""
    if isinstance(assignments_or_choices, dict):
        raw = {s: [v] if isinstance(v, str) else list(v) for s, v in assignments_or_choices.items()}
        unknown = [s for s in raw if s not in site_names]
        if unknown:
            raise UsageError(f"pairwise terms asked for unknown site(s) {unknown[:3]}; use the model's site names")
    else:
        spec = assignments_or_choices
        names = [c.strip() for c in spec.split(",")] if isinstance(spec, str) else [str(c) for c in spec]
        raw = {s: names for s in site_names}
    out = {}
    for s in site_names:
        fmts = [get_choice(f).name for f in raw.get(s, [])]
        out[s] = [f for f in dict.fromkeys(fmts) if not get_choice(f).weight.is_full_precision]
    return {s: f for s, f in out.items() if f}


def site_terms(loss: Callable[[dict[str, str]], float], candidates: dict[str, list[str]]) -> pd.DataFrame:
    """Measured single-site terms Ω_a(f) = L(a@f) − L(FP): columns site, format, omega."""
    fp = loss({})
    rows = [{"site": s, "format": f, "omega": loss({s: f}) - fp} for s, fs in candidates.items() for f in fs]
    return pd.DataFrame(rows, columns=["site", "format", "omega"])


def rank_pairs(order: list[str], singles: pd.DataFrame, max_pairs: int | None = None) -> list[tuple[str, str]]:
    """Site pairs (in `order`'s orientation), neighbours first, then by the Cauchy–Schwarz bound on |Ω_ab|."""
    pos = {s: i for i, s in enumerate(order)}
    sites = [s for s in order if s in set(singles.site)]
    worst = singles.assign(omega=singles.omega.clip(lower=0)).groupby("site").omega.max().to_dict()
    pairs = list(itertools.combinations(sites, 2))
    pairs.sort(key=lambda p: (abs(pos[p[0]] - pos[p[1]]) != 1, -math.sqrt(worst[p[0]] * worst[p[1]]),
                              pos[p[0]], pos[p[1]]))
    return pairs if max_pairs is None else pairs[:max_pairs]


def interaction_terms(loss: Callable[[dict[str, str]], float], candidates: dict[str, list[str]],
                      pairs: Iterable[tuple[str, str]], *, progress: bool | None = None) -> pd.DataFrame:
    """Measured Ω_ab for every format pair of every site pair (columns `COLUMNS`)."""
    fp = loss({})
    jobs = [(a, fa, b, fb) for a, b in pairs for fa in candidates.get(a, []) for fb in candidates.get(b, [])]
    rows = []
    for a, fa, b, fb in tqdm(jobs, desc="pairwise terms", unit="pair", leave=False,
                             disable=None if progress is None else not progress):
        om = loss({a: fa, b: fb}) - loss({a: fa}) - loss({b: fb}) + fp
        rows.append({"site_a": a, "format_a": fa, "site_b": b, "format_b": fb, "omega": om})
    return pd.DataFrame(rows, columns=COLUMNS)


def pairwise_terms(model: nn.Module, data, objective, sites: list[Site] | list[str], assignments_or_choices,
                   pairs: Iterable[tuple[str, str]] | None = None, max_pairs: int | None = None, *,
                   loss: CachedLoss | None = None, progress: bool | None = None) -> pd.DataFrame:
    """Measured pairwise terms L(both) − L(a) − L(b) + L(FP) on `data` (columns site_a, format_a,
    site_b, format_b, omega), ready for `mpsearch.solve(..., pairwise=...)`.

    `assignments_or_choices`: a plan's {site: format} (terms at the plan's formats), {site: [formats]},
    or a list of choices for every site. `pairs`: the site pairs to measure (default: all, or the
    `max_pairs` best-ranked: neighbours first, then the largest Cauchy–Schwarz bounds). `loss`: reuse
    a `MeasuredLoss` (its cache) across calls. Each pair of formats costs one model evaluation.
    """
    names = [s.name if isinstance(s, Site) else str(s) for s in sites]
    loss = loss if loss is not None else MeasuredLoss(model, data, objective)
    cands = candidates_of(names, assignments_or_choices)
    if pairs is None:
        pairs = rank_pairs(names, site_terms(loss, cands), max_pairs)
    else:
        pairs = [(a, b) for a, b in pairs]
        unknown = sorted({s for p in pairs for s in p} - set(names))
        if unknown:
            raise UsageError(f"pairs name unknown site(s) {unknown[:3]}; use the model's site names")
        pairs = pairs[:max_pairs] if max_pairs is not None else pairs
    return interaction_terms(loss, cands, pairs, progress=progress)
