"""Sensitivity estimators behind one interface: `get_estimator(name).estimate(...)` -> SensitivityTable."""

from . import hessian, measured, streaming, taylor  # noqa: F401  (register the estimators)
from ._base import (
    Estimator,
    SensitivityTable,
    estimator_names,
    get_estimator,
    register_estimator,
    table_from_samples,
    weight_perturbation,
)
from .zeroq import distill

__all__ = [
    "Estimator", "SensitivityTable", "estimator_names", "get_estimator", "register_estimator",
    "table_from_samples", "weight_perturbation", "distill",
]
