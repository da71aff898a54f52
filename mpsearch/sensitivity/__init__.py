"""Sensitivity estimators behind one interface: `get_estimator(name).estimate(...)` -> SensitivityTable."""

from . import hessian  # noqa: F401  (registers 'hessian')
from ._base import (
    Estimator,
    SensitivityTable,
    estimator_names,
    get_estimator,
    register_estimator,
    weight_perturbation,
)

__all__ = [
    "Estimator", "SensitivityTable", "estimator_names", "get_estimator", "register_estimator",
    "weight_perturbation",
]
