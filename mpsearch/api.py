"""The Python API's `plan`, `sensitivity`, `pareto` and `autotune`: thin functions over one `Planner`
(their signatures are a contract; new options go into `PlanConfig`). `describe` and `guard` are
re-exported for older callers."""

from __future__ import annotations

from torch import nn

from .budget import COLUMNS, Budget, parse_budgets
from .errors import UsageError
from .model import Site
from .objectives import Objective
from .plan import (
    Plan,
    describe,  # noqa: F401  (re-exported)
)
from .planner import AutotuneResult, ParetoFront, PlanConfig, Planner, guard, split  # noqa: F401  (guard: re-exported)
from .search.local import with_budget
from .search.tolerance import Tolerance
from .sensitivity import SensitivityTable


def sensitivity(model: nn.Module, data, *, estimator: str | None = None, formats=None,
                site_list: list[Site] | None = None, objective: str | Objective | None = None, seed: int = 0,
                cache: bool = True, rounding: str = "auto", **settings) -> SensitivityTable:
    """Ω(site, format) with error bars from the named estimator (`**settings` go to the estimator), each
    format's damage that of its weights as `rounding` rounds them (as in `plan`: auto = gptq when every
    quantized layer is a Linear and GPTQ's statistics fit `rounding.GPTQ_AUTO_MAX_BYTES`, else rtn).

    Estimators: hessian (auto: exact Gauss-Newton or Hutchinson; the default), fisher, taylor, output, measured,
    kfac (block-streamed; the default for a Hugging Face causal LM).
    The table is cached on disk ($MPSEARCH_CACHE or ~/.cache/mpsearch) unless `cache=False`.
    """
    cfg = PlanConfig(formats=formats, estimator=estimator, estimator_settings=settings, objective=objective,
                     seed=seed, cache=cache, rounding=rounding)
    planner = Planner(model, data, cfg, site_list=site_list)
    return planner.sensitivity(choices=planner.candidates)


def plan(model: nn.Module, data=None, budget: str | Budget | list | None = None, *, formats=None,
         estimator: str | None = None, search: str = "auto", seed: int = 0, hardware=None,
         objective: str | Objective | None = None, guard_uniform: bool = True, ties=None,
         estimator_settings: dict | None = None, search_settings: dict | None = None,
         sensitivity: SensitivityTable | None = None, max_drop: str | float | None = None,
         drop_metric: str | None = None, cache: bool = True, keep_16bit: bool = False, exclude=None, pin=None,
         rounding: str = "auto", target=None, max_evals: int | None = None,
         time_limit: float | None = None) -> Plan:
    """Choose a format per site that minimizes predicted damage within `budget`.

    `data`: calibration inputs (tensor, (x, y), dict, or iterable of batches); `budget`: `4MB`,
    `4.5bits`, `30%`, `latency=2ms` (with `hardware`), or a list of those; `formats`: candidate
    choices (default: the `hardware` target's; without one, int2-int8 per channel and bf16, or for a
    model of Linear layers int3-int6 / int8 g128 full-range (MSE clip) and bf16); `sensitivity`: a table from
    `mpsearch.sensitivity(...)` to reuse across budgets. The additive proxy can mislead, so the
    result is measured against every uniform plan that fits, and the better one is returned
    (`guard_uniform=False` skips that).

    `max_drop` (`1%` of FP, or absolute): instead, the cheapest plan within `budget` (default the
    16-bit size) whose measured `drop_metric` (default accuracy with labels) drops at most that much.
    Sensitivities are cached on disk by model, data and settings (`cache=False` recomputes them), so the
    next plan with another budget reuses them; a `Planner` keeps them in memory too.

    A Hugging Face `PreTrainedModel` is taken as it is (eager attention, no KV cache; `mpsearch.hf`), its
    fused projections tied and `kfac` the default estimator; `keep_16bit=True` keeps its embeddings and
    LM head at 16 bits.
    `exclude`: site-name patterns (fnmatch, or `re:REGEX`) kept 16-bit; `pin`: `PATTERN=FORMAT` rules
    (or a dict) giving those sites exactly FORMAT (`mpsearch.scope`); both still count in the totals.
    `rounding`: `auto` (default: `gptq` for a model of Linear layers whose float64 input Hessians fit
    `rounding.GPTQ_AUTO_MAX_BYTES`, 2 GiB, else `rtn`; `provenance.rounding_from` says why), `rtn`, `gptq`, `awq` or
    `awq+gptq` (`mpsearch.rounding`): how weights are rounded when scoring, measuring and applying the plan
    (`apply`/`export` of a non-`rtn` plan take `data=`). `target` (`vllm`,
    `tensorrt-llm`, `llama.cpp`, `onnxruntime`, or a profile .toml) restricts each site to what that runtime
    runs and ties fused sites (`mpsearch.targets`).

    `search="auto"` (the default) is `local` except for a Hugging Face language model (`ilp`). `local`
    solves the ILP on the proxy, measures its k best plans on `data` and then runs a measured local search
    (`search="ilp"`: the proxy's plan alone, no measured search); `max_evals` (distinct plans measured) and
    `time_limit` (seconds) bound it, and the plan's `measured["search_summary"]` says what it measured.
    """
    search_settings = with_budget(search_settings, max_evals, time_limit)
    cfg = PlanConfig(formats=formats, estimator=estimator, estimator_settings=dict(estimator_settings or {}),
                     search=search, search_settings=dict(search_settings or {}), hardware=hardware,
                     objective=objective, seed=seed, guard_uniform=guard_uniform, ties=ties, cache=cache,
                     keep_16bit=keep_16bit, exclude=exclude, pin=pin, rounding=rounding, target=target)
    if max_drop is not None:
        Tolerance.parse(max_drop)  # a typo fails before the model is touched
    if not parse_budgets(budget) and max_drop is None:
        raise UsageError("give a budget, e.g. budget='4MB', '4.5bits' or '30%'")
    return Planner(model, data, cfg, sensitivity=sensitivity).plan(budget, max_drop=max_drop,
                                                                  drop_metric=drop_metric)


def pareto(model: nn.Module, data, *, metric: str = "memory", points: int = 10, budgets: list | None = None,
           formats=None, estimator: str = "hessian", search: str = "ilp", hardware=None, objective=None,
           sensitivity=None, search_settings: dict | None = None, estimator_settings: dict | None = None,
           test=None, guard_uniform: bool = False, seed: int = 0, progress: bool | None = None,
           exclude=None, pin=None, rounding: str = "rtn") -> ParetoFront:
    """Plan at `points` budgets of `metric` from the cheapest achievable to the 16-bit model (plus each
    uniform plan's cost, or exactly `budgets`), measure every plan on `data` (and `test`), and return
    the front. The sensitivity is estimated once (or taken from `sensitivity`)."""
    if metric not in COLUMNS:
        raise UsageError(f"unknown metric {metric!r}; use one of {', '.join(COLUMNS)}")
    cfg = PlanConfig(formats=formats, estimator=estimator, estimator_settings=dict(estimator_settings or {}),
                     search=search, search_settings=dict(search_settings or {}), hardware=hardware,
                     objective=objective, seed=seed, guard_uniform=guard_uniform, exclude=exclude, pin=pin,
                     rounding=rounding)
    return Planner(model, data, cfg, sensitivity=sensitivity).pareto(metric, points=points, budgets=budgets,
                                                                       test=test, progress=progress)


def autotune(model: nn.Module, data, budget, *, held_out=None, held_out_fraction: float = 0.25,
             knobs: list[str] | None = None, trials: int = 24, formats=None, search: str = "ilp",
             hardware=None, metric: str | None = None, estimator_settings: dict | None = None,
             seed: int = 0, storage: str | None = "memory", progress: bool | None = None, exclude=None,
             pin=None) -> AutotuneResult:
    """Try knob configurations (all of a small space; else `trials` distinct ones by seeded TPE), plan on `data` with
    each, measure each plan on `held_out` (default: a seeded random `held_out_fraction` of `data`) and keep the
    best. `metric`: what to measure (default cross_entropy with labels, else kl). `estimator_settings`
    apply to every estimator that accepts them (e.g. {'max_probes': 32} for speed)."""
    if held_out is None:
        data, held_out = split(data, held_out_fraction, seed)  # a seeded random hold-out
    base = Planner(model, data, PlanConfig(formats=formats, estimator="hessian", search=search, hardware=hardware,
                                           seed=seed, guard_uniform=False, exclude=exclude, pin=pin))
    return base.autotune(budget, held_out, knobs=knobs, trials=trials, metric=metric,
                estimator_settings=estimator_settings, storage=storage, progress=progress)
