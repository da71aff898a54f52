"""Cost models: per-(site, format) bytes, bits and BOPs, plus latency and energy on named accelerators."""

from ._base import (
    FULL,
    CostModel,
    cost_model_names,
    cost_table,
    get,
    reference,
    register_cost_model,
    storage_costs,
)

__all__ = [
    "FULL", "CostModel", "cost_model_names", "cost_table", "get", "reference", "register_cost_model",
    "storage_costs",
]
