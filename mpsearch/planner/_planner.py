"""The `Planner`: one model's planning state, assembled once, asked many questions.

It finds the sites, picks the objective, calibrates activation scales, builds the cost table and the
16-bit reference, and keeps every sensitivity table it measured, so a second budget, a Pareto
sweep or an autotune configuration that needs the same table re-solves without re-estimating.
`mpsearch.plan`, `sensitivity`, `pareto`, `autotune`, the study trials and every CLI verb go
through it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields, replace
from functools import cached_property

import pandas as pd
import torch
from torch import nn

from .. import hardware_models, hf, targets
from ..activations import ActParams, calibrate_choices, plan_params
from ..budget import Budget, Reference, parse_budgets, resolve
from ..data import CalibrationData, as_data, check_fits
from ..errors import UsageError
from ..formats import LINEAR_DEFAULT_FORMATS, Choice, parse_choices
from ..memo import measure_key, remembered
from ..model import Site, eval_mode, fingerprint, sites
from ..objectives import Objective, better, default_objective, get_objective, measure
from ..plan import Plan, describe, provenance
from ..quantize import quantized
from ..report import comparison_rows
from ..rounding import Rounding, default_settings, linear_model, resolve_auto, rounding_key
from ..scope import Scope, keep_format, scope
from ..search import SearchProblem, Solution, get_searcher
from ..search._base import check_feasible
from ..search.local import for_bisection, held_back, polish, search_report
from ..search.tolerance import Tolerance
from ..sensitivity import Estimator, SensitivityTable, get_estimator
from ..sensitivity import cache as sensitivity_cache
from ..sensitivity.pairwise import MeasuredLoss
from .autotune import tune
from .pareto import sweep
from .tolerance import DropCheck, drop_check, within_tolerance

log = logging.getLogger("mpsearch")
SOLVE_FIELDS = ("search", "search_settings", "guard_uniform", "ties")  # change these: no re-estimate


@dataclass
class PlanConfig:
    """How to plan: the candidates, the estimator, the searcher, the target, the objective.

    `estimator=None` picks the default for the data: `measured` on ZeroQ-distilled inputs (KL, one
    site at a time), else `hessian`. `hardware`: a cost model name, spec file or `CostModel`.
    """

    formats: object = None
    estimator: str | Estimator | None = None
    estimator_settings: dict = field(default_factory=dict)
    # auto: `local` (ILP seeds + measured local search, mpsearch.search.local), but `ilp` (the proxy only) for a
    # Hugging Face language model, where each measurement is a full forward and 32-sequence calibration
    # sets overfit (tiny decoder at 3.5 bits: local +0.0068 ± 0.0030 held-out CE against ilp)
    search: str = "auto"
    search_settings: dict = field(default_factory=dict)
    hardware: object = None
    objective: str | Objective | None = None
    seed: int = 0
    guard_uniform: bool = True
    ties: list | None = None
    cache: bool = True
    keep_16bit: bool = False  # a language model's embeddings and LM head stay 16-bit (mpsearch.hf)
    exclude: object = None   # site patterns kept 16-bit (mpsearch.scope)
    pin: object = None       # PATTERN=FORMAT rules (mpsearch.scope)
    rounding: str = "auto"   # auto | rtn | gptq | awq | awq+gptq (mpsearch.rounding): how weights are rounded,
    #                          scored and applied; auto: gptq for a Linear-layer model, else rtn
    target: object = None    # a runtime profile (mpsearch.targets): per-site candidates and fused-site ties
    rounding_settings: dict | None = None  # e.g. {"damp": 0.01, "act_order": False}; None: GPTQ_SETTINGS for GPTQ

    def solve_only(self, **changes) -> PlanConfig:
        """A copy with searcher-side fields changed (what `Planner.plan(..., search=...)` takes)."""
        bad = sorted(set(changes) - set(SOLVE_FIELDS))
        if bad:
            raise UsageError(f"{bad[0]!r} cannot change per plan; it is one of {', '.join(SOLVE_FIELDS)} or a "
                             "new Planner (Planner.variant)")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def default_estimator(data: CalibrationData) -> str:
    """`measured` for distilled (ZeroQ) inputs, whose gradients say little; `hessian` otherwise."""
    return "measured" if getattr(data, "distilled", False) else "hessian"


class Planner:
    """Planning state for one (model, data, candidates, target). Build it once; call `plan` per budget,
    `pareto`, `autotune` or `sensitivity`; every call reuses what earlier calls assembled or measured."""

    def __init__(self, model: nn.Module, data, config: PlanConfig | None = None, *,
                 site_list: list[Site] | None = None, sensitivity: SensitivityTable | None = None,
                 _tables: dict | None = None):
        if data is None:
            raise UsageError("plan needs calibration data: a tensor of inputs, (x, y), or a DataLoader")
        self.model, self.config = model, config or PlanConfig()
        if hf.is_pretrained(model):  # llm: eager attention, no KV cache; kfac; fused projections tied
            self.model = model = hf.prepare(model)
            self.config = replace(self.config, estimator=self.config.estimator or "kfac",
                                  ties=list(self.config.ties or []) + hf.fused_ties([s.name for s in sites(model)]))
        self.config = self.resolved(self.config)
        raw = as_data(data)
        self.estimator_name = self.config.estimator or default_estimator(raw)
        self.objective = get_objective(self.config.objective) if self.config.objective else default_objective(raw)
        with eval_mode(model):
            if site_list is None:
                check_fits(model, raw)
            self.sites = site_list if site_list is not None else sites(model, raw.first_x)
            names = [s.name for s in self.sites]
            kept = set(hf.router_sites(model, names))  # llm: MoE routers stay 16-bit; their bytes count as fixed
            if self.config.keep_16bit:  # llm: no candidates for the embeddings and head either
                kept |= set(hf.head_and_embedding_sites(model, names))
            self.sites = [s for s in self.sites if s.name not in kept]
            self.data = raw.with_reference(model) if self.objective.needs_reference else raw
        # rounding helper: without formats, the target's default_formats (hardware_models.default_formats);
        # without a target, group-wise INT for a Linear-layer model (LINEAR_DEFAULT_FORMATS)
        defaults, self.formats_from = hardware_models.default_formats(self.config.hardware)
        if self.config.hardware is None and linear_model(self.sites):
            defaults = list(LINEAR_DEFAULT_FORMATS)
            self.formats_from = "mpsearch default for Linear layers (no hardware target)"
        self.formats_from = self.formats_from if self.config.formats is None else "given"
        rounding, self.rounding_from = resolve_auto(self.config.rounding, self.sites)
        self.config = replace(self.config, rounding=rounding)
        self.candidates = parse_choices(self.config.formats, defaults)  # before the target filters
        self._tables: dict = {} if _tables is None else _tables  # shared with variants
        self._given = sensitivity

    def variant(self, **changes) -> Planner:
        """A Planner for the same model and data with other config fields; it shares this one's sites
        and measured tables (a table is reused wherever it covers the candidates)."""
        known = {f.name for f in fields(PlanConfig)}
        bad = sorted(set(changes) - known)
        if bad:
            raise UsageError(f"PlanConfig has no field {bad[0]!r}; it has {', '.join(sorted(known))}")
        if self.config.estimator is None:  # keep the default chosen on the raw data (ZeroQ: measured)
            changes.setdefault("estimator", self.estimator_name)
        new = Planner(self.model, self.data, replace(self.config, **changes), site_list=self.sites,
                      sensitivity=self._given, _tables=self._tables)
        if "rounding" not in changes:  # the same rounding, for the same reason
            new.rounding_from = self.rounding_from
        return new

    # --- what every workflow shares, built on first use --------------------------------------------

    def resolved(self, cfg: PlanConfig) -> PlanConfig:
        """`search="auto"` made concrete for this model (see PlanConfig.search); asking for a measured
        budget (max_evals) asks for the measured search."""
        if cfg.search != "auto":
            return cfg
        measured = "max_evals" in (cfg.search_settings or {}) or not hf.is_pretrained(self.model)
        return replace(cfg, search="local" if measured else "ilp")

    @cached_property
    def hardware(self):
        return hardware_models.get(self.config.hardware)

    @cached_property
    def scope(self) -> Scope:
        """Excluded and pinned sites (mpsearch.scope)."""
        return scope([s.name for s in self.sites], self.config.exclude, self.config.pin, keep_format(self.candidates))

    @cached_property
    def runtime(self) -> tuple[dict | None, list]:
        """The runtime profile's per-site candidates and its fused-site ties (mpsearch.targets), decided
        before the search so every plan is deployable by construction; (None, []) without a target."""
        runnable = hardware_models.supported(self.hardware, self.scope.choices(self.candidates))
        allowed, ties, notes = targets.restrict(self.config.target, self.sites, runnable)
        for note in notes:
            log.warning(note)
        return allowed, ties

    @cached_property
    def choices(self) -> list[Choice]:
        """The candidates the hardware and runtime can run (warns naming the dropped ones), plus pinned formats."""
        return targets.candidates(hardware_models.supported(self.hardware, self.scope.choices(self.candidates)),
                                  self.runtime[0])

    @cached_property
    def uniform_choices(self) -> list[Choice]:
        """The runnable candidates a uniform plan may use (pinned-only formats are not candidates; with a
        runtime profile, only formats every site may take)."""
        ok = self.scope.check_supported(self.candidates, self.choices, getattr(self.hardware, "name", None))
        return targets.candidates(ok, self.runtime[0], everywhere=True)

    @cached_property
    def rounding(self) -> Rounding:
        """How weights are rounded (mpsearch.rounding); GPTQ's statistics come from the 16-bit model."""
        with eval_mode(self.model):
            settings = self.config.rounding_settings
            settings = default_settings(self.config.rounding) if settings is None else dict(settings)
            return Rounding(self.config.rounding, self.model, self.data, **settings)

    @cached_property
    def acts(self) -> ActParams:
        """Activation scales of every WEIGHT:ACT candidate, calibrated on the FP model as `apply` uses them."""
        with eval_mode(self.model):
            return calibrate_choices(self.model, self.data, self.sites, self.scope.choices(self.candidates))

    @cached_property
    def costs(self) -> pd.DataFrame:
        table = self.scope.restrict(hardware_models.cost_table(self.sites, self.choices, self.hardware),
                                    self.uniform_choices)
        return targets.keep_allowed(table, self.runtime[0])

    @cached_property
    def reference(self) -> Reference:
        return hardware_models.reference(self.model, self.sites, self.hardware)

    # --- measure once -------------------------------------------------------------------------------
    def sensitivity(self, estimator: str | Estimator | None = None, settings: dict | None = None,
                    choices: list[Choice] | None = None) -> SensitivityTable:
        """Ω(site, choice) from the estimator (default: the config's), measured once per estimator,
        settings and objective; a later call whose choices the table covers gets the same table."""
        if self._given is not None and estimator is None:  # right model, a row for every (site, format)
            return self._given.check_fits(fingerprint(self.model), self.sites, choices or self.choices)
        est = get_estimator(estimator or self.estimator_name,
                            **(self.config.estimator_settings if settings is None else settings))
        need = choices or self.choices
        key = (type(est).__qualname__, est.name, json.dumps(est.recorded_params(), sort_keys=True, default=str),
               self.objective.name, self.config.seed, self.config.rounding,
               json.dumps(self.rounding.settings, sort_keys=True, default=str))
        names = {c.name for c in need}
        for have_names, table in self._tables.get(key, []):
            if names <= have_names:
                return table
        with eval_mode(self.model), self.rounding.active():
            table = sensitivity_cache.estimate(est, self.model, self.sites, need, self.data, self.objective,
                                               seed=self.config.seed, use_cache=self.config.cache)
        self._tables.setdefault(key, []).append((names, table))
        return table

    # --- solve many ---------------------------------------------------------------------------------
    def problem(self, limits: dict[str, float], sens: SensitivityTable, config: PlanConfig) -> SearchProblem:
        table = sens.frame.merge(self.costs, on=["site", "format"])
        return SearchProblem(table, limits, list(config.ties or []) + self.runtime[1], seed=config.seed,
                             evaluate=MeasuredLoss(self.model, self.data, self.objective, self.acts))

    def plan(self, budget, *, max_drop=None, drop_metric: str | None = None, **solve) -> Plan:
        """The plan that minimizes predicted damage within `budget` (see `mpsearch.plan`); `solve` may
        change the searcher-side fields (search, search_settings, guard_uniform, ties) for this call."""
        cfg = self.resolved(self.config.solve_only(**solve))
        max_drop = None if max_drop is None else Tolerance.parse(max_drop)  # a typo fails before any estimate
        budgets = parse_budgets(budget) or ([Budget("memory", 1.0, True)] if max_drop is not None else [])
        if not budgets:
            raise UsageError("give a budget, e.g. budget='4MB', '4.5bits' or '30%'")
        torch.manual_seed(cfg.seed)
        with eval_mode(self.model), self.rounding.active():
            limits = resolve(budgets, self.reference)
            check_feasible(self.costs, limits, self.reference)  # fail before the (expensive) estimate
            sens = self.sensitivity()
            problem = self.problem(limits, sens, cfg)
            check = None if max_drop is None else drop_check(self.model, self.data, max_drop, drop_metric, self.acts)
            sol, problem = self._search(problem, cfg, check)
            assignments, measured = sol.assignments, {}
            if cfg.guard_uniform:
                assignments, measured = self.guard(problem, assignments,
                                                   admissible=None if check is None else check.accepts)
        if sol.history is not None and len(sol.history) <= 100:  # what the search measured (bisection, refine)
            measured["search"] = sol.history.drop(columns="assignments", errors="ignore").to_dict("records")
        if cfg.search == "local":  # what the measured search saw, and the plan's distance from its best
            measured["search_summary"] = search_report(sol, measured, self.objective.name,
                                                       self.objective.higher_is_better)
        result = Plan(assignments, fingerprint(self.model), budgets=[str(b) for b in budgets], measured=measured,
                      provenance=provenance(sens.estimator, cfg.search, cfg.seed, objective=self.objective.name,
                                            solver_status=sol.status, solve_seconds=round(sol.seconds, 4),
                                            estimator_settings=sens.settings,
                                            formats=[c.name for c in self.choices],
                                            hardware=getattr(self.hardware, "name", None),
                                            max_drop=None if max_drop is None else str(max_drop),
                                            **self.scope.rules, rounding=self.rounding.name,
                                            rounding_from=self.rounding_from,
                                            rounding_settings=self.rounding.settings,
                                            formats_from=self.formats_from,
                                            target=getattr(targets.get_target(self.config.target), "name", None)))
        return describe(result, self.model, self.sites, self.hardware, sens.frame, self.acts)

    def _search(self, problem: SearchProblem, cfg: PlanConfig,
                check: DropCheck | None) -> tuple[Solution, SearchProblem]:
        searcher = get_searcher(cfg.search, **(cfg.search_settings or {}))
        problem = held_back(problem, searcher, self.data, lambda d: MeasuredLoss(self.model, d, self.objective,
                                                                               self.acts))
        if check is not None:  # bisection to tolerance; the guard then works at the accepted cost
            sol, at = within_tolerance(problem, for_bisection(searcher), check)
            return polish(at, searcher, sol, check.accepts), at  # `local`: one measured search at the end
        return searcher.search(problem), problem

    def bisect(self, max_drop, budget=None, drop_metric: str | None = None) -> Plan:
        """The cheapest plan within `budget` (default the 16-bit size) whose measured `drop_metric`
        drops at most `max_drop` on the calibration data."""
        return self.plan(budget, max_drop=max_drop, drop_metric=drop_metric)

    # --- measure plans ------------------------------------------------------------------------------
    def measure(self, assignments: dict[str, str], data: CalibrationData | None = None,
                metrics: list | None = None, acts: ActParams | None = None) -> dict[str, float]:
        """The metrics (default: the objective, plus accuracy with labels) of the quantized model on
        `data` (default: the calibration data)."""
        data = self.data if data is None else data
        metrics = metrics or self.metrics(data)
        with self.rounding.active(), quantized(self.model, assignments, self.acts if acts is None else acts):
            return measure(self.model, data, metrics)

    def metrics(self, data: CalibrationData | None = None) -> list[str]:
        data = self.data if data is None else data
        return [self.objective.name] + (["accuracy"] if data.labelled and self.objective.name != "accuracy" else [])

    def guard(self, problem: SearchProblem, assignments: dict[str, str],
              admissible=None) -> tuple[dict[str, str], dict]:
        """Measure the plan and every uniform plan; never return a plan that measures worse than a
        uniform plan that also fits the budget (and passes `admissible`, e.g. a --max-drop tolerance).
        Returns (assignments, measurements)."""
        return guard(self.model, self.data, self.objective, problem, assignments, self.uniform_choices,
                     self.reference, self.acts, admissible, fixed=self.scope)

    def compare_on(self, test: CalibrationData, plan: Plan, metrics: list[str] | None = None) -> dict[str, dict]:
        """The plan's comparison rows (FP, the plan, the uniform plans the report shows) on held-out
        `test` data: cross-entropy and accuracy with labels, else the objective and SQNR, or `metrics`."""
        if metrics:  # e.g. a language model's perplexity and token KL against the FP model
            test = test.with_reference(self.model)
        elif test.labelled:
            metrics = ["cross_entropy", "accuracy"]
        else:  # label-free (minilm-l6): distance to the FP outputs
            metrics = [plan.provenance.get("objective", "kl"), "sqnr"]
            test = test.with_reference(self.model)
        out = {"fp (16-bit)": measure(self.model, test, metrics),
               "plan": self.measure(plan.assignments, test, metrics, plan_params(plan.sites))}
        uniform = [label.split()[1] for label, _ in comparison_rows(plan) if label.startswith("uniform")]
        acts = calibrate_choices(self.model, self.data, plan.assignments, uniform)
        for name in uniform:
            out[f"uniform {name}"] = self.measure(self.scope.uniform(plan.assignments, name), test, metrics, acts)
        return out

    # --- the other workflows ------------------------------------------------------------------------
    def pareto(self, metric: str = "memory", **kwargs):
        """The measured trade-off curve over `metric` (see `mpsearch.planner.pareto.sweep`)."""
        return sweep(self, metric, **kwargs)

    def autotune(self, budget, held_out, **kwargs):
        """The knob configuration whose plan measures best on `held_out` (see `mpsearch.planner.autotune.tune`)."""
        return tune(self, budget, held_out, **kwargs)


def guard(model: nn.Module, data: CalibrationData, objective: Objective, problem: SearchProblem,
          assignments: dict[str, str], choices: list[Choice], ref: Reference,
          acts: ActParams | None = None, admissible=None, fixed: Scope | None = None) -> tuple[dict[str, str], dict]:
    """Measure the plan and every uniform plan that fits the budget; never return a plan that measures
    worse (under the objective's direction) than such a uniform plan that passes `admissible`.
    Uniform plans over the budget are costed, not measured; measurements are remembered across budgets
    (`mpsearch.memo`); `fixed` sites keep their format in every uniform plan. Returns (assignments, measurements)."""
    metrics = [objective.name] + (["accuracy"] if data.labelled and objective.name != "accuracy" else [])
    fixed = fixed or Scope()
    keys = (fingerprint(model), data.digest())

    def run(assign: dict[str, str] | None) -> dict[str, float]:
        def go():
            if assign is None:
                return measure(model, data, metrics)
            with quantized(model, assign, acts):
                return measure(model, data, metrics)
        return remembered(measure_key(*keys, metrics, assign or {"": "fp"}, acts, rounding_key()), go)

    site_names = problem.sites
    table = problem.table.set_index(["site", "format"])
    result = {"objective": objective.name, "data": "calibration", "fp": run(None),
              "plan": run(assignments), "uniform": {}}
    best_name, best = None, result["plan"][objective.name]
    for c in choices:
        uni = fixed.uniform(site_names, c.name)
        fits = problem.fits(uni)
        rows = table.loc[list(uni.items())]
        m = {"fits_budget": fits, "bytes": float(rows.bytes.sum()) + ref.fixed["bytes"],
             "avg_bits": float(rows.bits.sum()) / ref.weights}
        if fits:  # only a uniform plan that fits can replace the searched one
            m = run(uni) | m
        result["uniform"][c.name] = m
        if fits and better(objective, m[objective.name], best) and (admissible is None or admissible(uni)):
            best_name, best = c.name, m[objective.name]
    if best_name is not None:
        result["guard"] = (f"uniform {best_name} measured a better {objective.name} than the searched plan "
                           f"({best:.4g} vs {result['plan'][objective.name]:.4g}); returned uniform {best_name}")
        result["searched_plan"] = result["plan"]
        result["plan"] = result["uniform"][best_name]
        return fixed.uniform(site_names, best_name), result
    return assignments, result
