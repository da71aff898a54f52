"""Cost models: per-(site, format) bytes, bits and BOPs, plus latency and energy on named accelerators.

hw = mpsearch.hardware_models.get("h100", batch=32)   # or "h100:batch=32", or a spec .toml
hw.gemm_cost(1, 4096, 4096, "int4_g128")              # latency, bytes, BOPs, energy, bound
"""

from ._analytical import AnalyticalCostModel, get, parse_hardware
from ._base import (
    FULL,
    CostModel,
    cost_model_names,
    cost_table,
    model_costs,
    reference,
    register_cost_model,
    storage_costs,
    supported,
)
from ._calibrate import Calibration, calibrate, read_measurements
from ._defaults import default_formats
from ._roofline import Gemm, GemmCost, UnsupportedFormat, operand_class
from ._spec import Number, Spec, SpecError, load_spec
from ._workload import Workload

__all__ = [
    "FULL",
    "AnalyticalCostModel",
    "Calibration",
    "CostModel",
    "Gemm",
    "GemmCost",
    "Number",
    "Spec",
    "SpecError",
    "UnsupportedFormat",
    "Workload",
    "calibrate",
    "cost_model_names",
    "cost_table",
    "default_formats",
    "get",
    "load_spec",
    "model_costs",
    "operand_class",
    "parse_hardware",
    "read_measurements",
    "reference",
    "register_cost_model",
    "storage_costs",
    "supported",
]
