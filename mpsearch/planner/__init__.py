"""The planner layer: one `Planner` per model and its workflows (plan, Pareto sweep, tolerance
bisection, autotune). It sits above the searchers, estimators and cost models, below studies and the
CLI; the public one-call functions (`mpsearch.plan`, `pareto`, `autotune`) are in `mpsearch.api`."""

from ._planner import PlanConfig, Planner, default_estimator, guard
from .autotune import AutotuneResult, Knob, knob_names, register_knob, split, tune
from .pareto import ParetoFront, non_dominated, sweep
from .tolerance import DropCheck, drop_check, within_tolerance

__all__ = ["AutotuneResult", "DropCheck", "Knob", "ParetoFront", "PlanConfig", "Planner",
           "default_estimator", "drop_check", "guard", "knob_names", "non_dominated",
           "register_knob", "split", "sweep", "tune", "within_tolerance"]
