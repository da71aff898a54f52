"""Run one grid point: plan through a `Planner`, apply the plan, measure it on held-out data.

A worker keeps its models, their FP measurements and one Planner per (model, formats, estimator) in
memory; a grid point's hardware and searcher are a variant of it that shares its sensitivity table,
so a budget sweep pays for the estimator once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from torch import nn

from ..apply import apply
from ..data import CalibrationData, as_data
from ..examples import load_example
from ..loading import load_model
from ..model import set_mode
from ..objectives import get_objective, measure
from ..planner import PlanConfig, Planner
from ..sensitivity import SensitivityTable
from .spec import COST_METRICS, NO_HARDWARE, GridPoint, ModelSpec, StudySpec


@dataclass
class StudyModel:
    """A loaded model with its calibration data and the split its plans are scored on."""

    model: nn.Module
    calibration: CalibrationData
    evaluation: CalibrationData
    eval_split: str  # "test" (held out) or "calibration" when the model comes with nothing else
    fp: dict[str, float]


def load_study_model(m: ModelSpec, metrics: list[str]) -> StudyModel:
    test = None
    if m.example:
        ex = load_example(m.example)
        model, calib, test = ex.model, ex.calibration, getattr(ex, "test", None)
    else:
        model = load_model(m.path, trust_pickle=m.trust_pickle, factory=m.factory).module
        calib = None
    calibration = as_data(m.data or calib, m.batch_size)
    if m.test_data:
        test = m.test_data
    evaluation = as_data(test, m.batch_size) if test is not None else calibration
    set_mode(model, False)
    if any(get_objective(n).needs_reference for n in metrics):
        evaluation = evaluation.with_reference(model)
    return StudyModel(model, calibration, evaluation, "test" if test is not None else "calibration",
                      measure(model, evaluation, metrics) if metrics else {})


class Evaluator:
    """Evaluates grid points of one study, caching what trials share."""

    def __init__(self, spec: StudySpec):
        self.spec = spec
        self._models: dict[str, StudyModel] = {}
        self._planners: dict[tuple[str, str, str], Planner] = {}

    def model(self, label: str) -> StudyModel:
        if label not in self._models:
            self._models[label] = load_study_model(self.spec.model(label), self.spec.measure)
        return self._models[label]

    def planner(self, p: GridPoint) -> Planner:
        """The Planner of the point's (model, formats, estimator), its table measured on every format."""
        key = (p.model, p.formats, p.estimator)
        if key not in self._planners:
            m, est = self.model(p.model), self.spec.estimator(p.estimator)
            cfg = PlanConfig(formats=self.spec.formats[p.formats], estimator=est.name,
                             estimator_settings=dict(est.settings), objective=self.spec.objective,
                             seed=self.spec.seed)
            self._planners[key] = Planner(m.model, m.calibration, cfg)
            self._planners[key].sensitivity()
        return self._planners[key]

    def sensitivity(self, p: GridPoint) -> SensitivityTable:
        return self.planner(p).sensitivity()

    def evaluate(self, p: GridPoint) -> dict:
        """Result attributes of one trial: metrics (predicted totals and measured objectives), the plan."""
        t0 = time.perf_counter()
        m = self.model(p.model)
        search = self.spec.searcher(p.searcher)
        planner = self.planner(p).variant(hardware=None if p.hardware == NO_HARDWARE else p.hardware,
                                          search=search.name, search_settings=dict(search.settings),
                                          guard_uniform=self.spec.run.guard)
        plan = planner.plan(p.budget)
        measured = measure(apply(m.model, plan), m.evaluation, self.spec.measure) if self.spec.measure else {}
        metrics = {k: float(plan.totals[k]) for k in COST_METRICS if k in plan.totals} | measured
        metrics["bytes_16bit"] = float(plan.totals["bytes_16bit"])
        return {"metrics": metrics, "fp": m.fp, "eval_split": m.eval_split, "assignments": plan.assignments,
                "guarded": "guard" in plan.measured, "plan": plan.to_json(),
                "seconds": round(time.perf_counter() - t0, 4)}
