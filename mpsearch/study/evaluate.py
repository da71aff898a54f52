"""Run one grid point: plan through the public API, apply the plan, measure it on held-out data.

A worker keeps its models, their FP measurements and one sensitivity table per (model, formats,
estimator) in memory, so a budget sweep pays for the estimator once (plan(..., sensitivity=...)).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from torch import nn

from .. import api
from ..apply import apply
from ..data import CalibrationData, as_data
from ..examples import load_example
from ..loading import load_model
from ..model import set_mode
from ..objectives import get_objective, measure
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
        self._tables: dict[tuple[str, str, str], SensitivityTable] = {}

    def model(self, label: str) -> StudyModel:
        if label not in self._models:
            self._models[label] = load_study_model(self.spec.model(label), self.spec.measure)
        return self._models[label]

    def sensitivity(self, p: GridPoint) -> SensitivityTable:
        key = (p.model, p.formats, p.estimator)
        if key not in self._tables:
            m, est = self.model(p.model), self.spec.estimator(p.estimator)
            self._tables[key] = api.sensitivity(
                m.model, m.calibration, estimator=est.name, formats=self.spec.formats[p.formats],
                objective=self.spec.objective, seed=self.spec.seed, **est.settings)
        return self._tables[key]

    def evaluate(self, p: GridPoint) -> dict:
        """Result attributes of one trial: metrics (predicted totals and measured objectives), the plan."""
        t0 = time.perf_counter()
        m = self.model(p.model)
        est, search = self.spec.estimator(p.estimator), self.spec.searcher(p.searcher)
        plan = api.plan(m.model, m.calibration, budget=p.budget, formats=self.spec.formats[p.formats],
                        estimator=est.name, estimator_settings=est.settings, search=search.name,
                        search_settings=search.settings, seed=self.spec.seed,
                        hardware=None if p.hardware == NO_HARDWARE else p.hardware,
                        objective=self.spec.objective, guard_uniform=self.spec.run.guard,
                        sensitivity=self.sensitivity(p))
        measured = measure(apply(m.model, plan), m.evaluation, self.spec.measure) if self.spec.measure else {}
        metrics = {k: float(plan.totals[k]) for k in COST_METRICS if k in plan.totals} | measured
        metrics["bytes_16bit"] = float(plan.totals["bytes_16bit"])
        return {"metrics": metrics, "fp": m.fp, "eval_split": m.eval_split, "assignments": plan.assignments,
                "guarded": "guard" in plan.measured, "plan": plan.to_json(),
                "seconds": round(time.perf_counter() - t0, 4)}
