"""Autotune the pipeline's own knobs: pick the configuration that measures best on held-out data.

A plan depends on choices the user rarely knows how to make: which estimator, which format variant
(granularity, clipping, asymmetry — whatever the format registry names), how activation scales are
calibrated (min-max, MSE, OCTAV, percentile), which loss the sensitivity
is taken on, how per-site damage aggregates. As Quantune does, try configurations and keep the one
whose plan measures best on data the planner did not see. Each knob is a registered `Knob` whose
options come from the registries at run time, so a new estimator or format variant joins without
edits here. Small spaces are enumerated (Optuna's grid sampler); larger ones use seeded TPE.
"""

from __future__ import annotations

import itertools
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import pandas as pd
from tqdm.auto import tqdm

from ..activations import plan_params
from ..data import CalibrationData, as_data
from ..errors import UsageError
from ..objectives import Objective, as_loss, default_objective, get_objective
from ..params import Plugin
from ..registry import Registry
from ..sensitivity import get_estimator


@dataclass
class TuneContext:
    """What knobs read to list their options: the candidate formats and whether the data has labels."""

    formats: list[str]
    labelled: bool


class Knob(Plugin, ABC):  # settings, if any, are dataclass fields (mpsearch.params)
    """One pipeline choice. `options` lists values (the first is the default); `apply` edits the plan()
    keyword arguments for a value."""

    kind = "knob"

    @abstractmethod
    def options(self, ctx: TuneContext) -> list: ...

    @abstractmethod
    def apply(self, kwargs: dict, value) -> None: ...


_KNOBS: Registry[type[Knob]] = Registry("knob", ordered=True)  # registration order: the order knobs are tuned in
register_knob = _KNOBS.register()
knob_names = _KNOBS.names


@register_knob
class EstimatorKnob(Knob):
    """Every registered sensitivity estimator: aliases of one class counted once, and variants that only
    change a default (`variant_of` set, e.g. `hutchinson` of `hessian`) left to the estimator they vary."""

    name = "estimator"

    def options(self, ctx: TuneContext) -> list:
        from ..sensitivity import estimator_names, get_estimator

        out = []
        for n in estimator_names():
            cls = type(get_estimator(n))
            if getattr(cls, "variant_of", None) is None and (getattr(cls, "name", "") or n) not in out:
                out.append(getattr(cls, "name", "") or n)
        return sorted(out, key=lambda n: n != "hessian")

    def apply(self, kwargs: dict, value) -> None:
        kwargs["estimator"] = value


@register_knob
class FormatVariantKnob(Knob):
    """Granularity / clipping / asymmetry: every name suffix the format registry offers for all of the
    candidate (non-16-bit) formats, e.g. '' (as given), '_pt', '_g128'."""

    name = "format_variant"

    def options(self, ctx: TuneContext) -> list:
        from ..errors import FormatError
        from ..formats import format_names, get_choice, get_format

        bases = [f for f in ctx.formats if ":" not in f and not get_choice(f).weight.is_full_precision]
        suffixes = {n[len(b):] for n in format_names() for b in bases if n.startswith(b + "_")}
        out = [""]
        for sfx in sorted(suffixes):
            try:
                names = {get_format(b + sfx).name for b in bases}
            except FormatError:
                continue
            if names != set(bases):
                out.append(sfx)
        return out

    def apply(self, kwargs: dict, value) -> None:
        from ..formats import get_choice

        if value:
            kwargs["formats"] = [f if ":" in f or get_choice(f).weight.is_full_precision else f + value
                                 for f in kwargs["formats"]]


@register_knob
@dataclass(eq=False)
class ActCalibrationKnob(Knob):
    """How the activation scales of WEIGHT:ACT choices are calibrated: min-max (as given), MSE-optimal
    clip, OCTAV, or a percentile clip. One option only (so not tuned) when no choice quantizes inputs."""

    name = "act_calibration"
    methods: tuple[str, ...] = ("", "_mse", "_octav", "_p9999", "_p999")

    def options(self, ctx: TuneContext) -> list:
        from ..errors import FormatError
        from ..formats import get_choice

        acts = [f for f in ctx.formats if ":" in f and get_choice(f).act is not None]
        if not acts:
            return [""]
        out = []
        for m in self.methods:
            try:
                for f in acts:
                    get_choice(self._with(f, m))
            except FormatError:  # e.g. the ACT name already carries a clip suffix
                continue
            out.append(m)
        return out or [""]

    @staticmethod
    def _with(name: str, method: str) -> str:
        return f"{name}{method}" if ":" in name and method else name

    def apply(self, kwargs: dict, value) -> None:
        from ..formats import get_choice

        if value:
            kwargs["formats"] = [self._with(f, value) if ":" in f and get_choice(f).act is not None else f
                                 for f in kwargs["formats"]]


@register_knob
class SensitivityLossKnob(Knob):
    """The loss the estimator scores damage on: the task loss, or the label-free KL to the FP model."""

    name = "sensitivity_loss"

    def options(self, ctx: TuneContext) -> list:
        return ["cross_entropy", "kl"] if ctx.labelled else ["kl", "mse"]

    def apply(self, kwargs: dict, value) -> None:
        kwargs["objective"] = value


@register_knob
@dataclass(eq=False)
class AggregateKnob(Knob):
    """How per-site damage combines in the ILP: the sum (additive), the L2 norm, or the worst site."""

    name = "aggregate"
    aggregates: tuple[str, ...] = ("sum", "lp:2", "max")

    def options(self, ctx: TuneContext) -> list:
        return list(self.aggregates)

    def apply(self, kwargs: dict, value) -> None:
        kwargs.setdefault("search_settings", {})["aggregate"] = value


def split(data, held_out_fraction: float, seed: int = 0) -> tuple[CalibrationData, CalibrationData]:
    """A seeded random part of the samples to plan on, the rest held out (not the last rows: an ordered
    file would hold out one class)."""
    data = as_data(data)
    n = data.num_samples
    k = int(round(n * (1 - held_out_fraction)))
    if not 0 < k < n:
        raise UsageError(f"cannot hold out {held_out_fraction:.0%} of {n} samples; pass held_out data instead")
    return data.split(k, seed)


@dataclass
class AutotuneResult:
    """`best`: the winning knob values; `plan`: its plan; `trials`: one row per configuration tried,
    with the held-out score it was chosen on (`held_out_<metric>`) and the calibration score."""

    best: dict
    plan: object
    trials: pd.DataFrame
    metric: str
    settings: dict = field(default_factory=dict)


@dataclass
class _Trials:
    """What `tune` measures per configuration: a plan from a Planner variant, scored on held-out data."""

    base: object  # the Planner every configuration is a variant of
    budget: object
    held_out: CalibrationData
    objective: Objective
    estimator_settings: dict
    rows: list = field(default_factory=list)

    def configure(self, values: dict) -> dict:
        kwargs = {"formats": [c.name for c in self.base.candidates], "estimator": "hessian",
                  "search": self.base.config.search, "objective": None, "search_settings": {}}
        for k, v in values.items():
            _KNOBS.create(k).apply(kwargs, v)
        takes = get_estimator(kwargs["estimator"]).get_params()  # each estimator gets the settings it reads
        kwargs["estimator_settings"] = {k: v for k, v in self.estimator_settings.items() if k in takes}
        return kwargs

    def evaluate(self, values: dict) -> float:
        t0 = time.perf_counter()
        planner = self.base.variant(**self.configure(values))
        planner.sensitivity(choices=planner.candidates)  # on every candidate, as the target filters later
        p = planner.plan(self.budget)
        obj, extra = self.objective, self.extra
        acts = plan_params(p.sites)  # the plan's calibrated activation scales
        h = planner.measure(p.assignments, self.held_out, [obj, *extra], acts)
        data = self.base.data.with_reference(self.base.model) if obj.needs_reference else self.base.data
        c = planner.measure(p.assignments, data, [obj], acts)
        self.rows.append({**values, f"held_out_{obj.name}": h[obj.name],
                          **{f"held_out_{m}": h[m] for m in extra}, f"cal_{obj.name}": c[obj.name],
                          "avg_bits": p.totals["avg_bits"], "bytes": p.totals["bytes"],
                          "seconds": time.perf_counter() - t0, "plan": p})
        return float(as_loss(obj, h[obj.name]))

    @property
    def extra(self) -> list[str]:
        return ["accuracy"] if self.held_out.labelled and self.objective.name != "accuracy" else []


def tune(planner, budget, held_out, *, knobs: list[str] | None = None, trials: int = 24, metric: str | None = None,
         estimator_settings: dict | None = None, storage: str | None = "memory",
         progress: bool | None = None) -> AutotuneResult:
    """`autotune` on a `Planner` (its data is what plans see; `held_out` is what they are chosen on).
    Configurations that share an estimator, formats and loss share one sensitivity table."""
    held_out = as_data(held_out)
    obj = get_objective(metric) if metric else default_objective(planner.data)
    if obj.needs_reference:
        held_out = held_out.with_reference(planner.model)
    ctx = TuneContext([c.name for c in planner.candidates], planner.data.labelled)
    chosen = knobs if knobs is not None else knob_names()
    space = {k: _KNOBS.create(k).options(ctx) for k in chosen}  # an unknown knob: UsageError naming the choices
    space = {k: v for k, v in space.items() if len(v) > 1}
    if not space:
        raise UsageError("no knob has more than one option here; nothing to tune")
    runs = _Trials(planner, budget, held_out, obj, dict(estimator_settings or {}))
    exhaustive = _optimize(space, runs.evaluate, trials, planner.config.seed, storage, progress)
    table = pd.DataFrame(runs.rows)
    best_i = as_loss(obj, table[f"held_out_{obj.name}"]).idxmin()
    best = {k: table.loc[best_i, k] for k in space}
    return AutotuneResult(best, table.loc[best_i, "plan"], table.drop(columns="plan"), obj.name,
                          {"space": space, "exhaustive": exhaustive, "budget": str(budget)})


def _optimize(space: dict, evaluate, trials: int, seed: int, storage, progress) -> bool:
    """Run Optuna over `space` (grid when it has at most `trials` points, else seeded TPE), evaluating
    each distinct configuration once. Returns whether the space was enumerated."""
    import optuna

    grid = list(itertools.product(*space.values()))
    exhaustive = len(grid) <= trials
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (optuna.samplers.GridSampler({k: list(v) for k, v in space.items()}, seed=seed) if exhaustive
               else optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, trials)))
    study = optuna.create_study(storage=None if storage == "memory" else storage, sampler=sampler,
                                study_name=f"mpsearch-autotune-s{seed}-{time.time_ns()}")
    if not exhaustive:
        study.enqueue_trial({k: v[0] for k, v in space.items()})  # the default configuration first
    bar = tqdm(total=len(grid) if exhaustive else trials, desc="autotune", unit="config", leave=False,
               disable=None if progress is None else not progress)
    seen: dict[tuple, float] = {}
    wanted = min(trials, len(grid))

    def objective_fn(trial):
        values = {k: trial.suggest_categorical(k, v) for k, v in space.items()}
        key = tuple(values.values())
        if key not in seen:  # TPE re-proposes configurations it likes: measure each one once
            bar.update(1)
            seen[key] = evaluate(values)
        return seen[key]

    def enough(study, _trial):
        if len(seen) >= wanted:
            study.stop()

    try:  # `trials` distinct configurations (TPE gets a few repeats' grace before it counts as converged)
        study.optimize(objective_fn, n_trials=wanted if exhaustive else 4 * wanted, callbacks=[enough])
    finally:
        bar.close()
    return exhaustive
