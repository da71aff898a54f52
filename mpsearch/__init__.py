"""mpsearch: per-layer mixed-precision plans for PyTorch models under memory/latency/bit budgets.

    plan = mpsearch.plan(model, (x, y), budget="4bits")
    qmodel = mpsearch.apply(model, plan)
"""

from ._interrupt import guard_imports as _guard_imports

_guard_imports()  # python -m mpsearch: a Ctrl-C while torch imports is "interrupted" / 130, not a traceback

from ._version import __version__  # noqa: F401,E402
from .api import autotune, pareto, plan, sensitivity  # noqa: E402
from .apply import apply  # noqa: E402
from .budget import Budget  # noqa: E402
from .errors import (  # noqa: E402
    BudgetError,
    DataError,
    FormatError,
    InfeasibleBudget,
    ModelLoadError,
    ModelMismatch,
    MpsearchError,
    NoQuantizableSites,
    PlanError,
    StudyError,
)
from .formats import get_choice, get_format  # noqa: E402
from .model import Site, fingerprint, sites  # noqa: E402
from .packed import export, load_packed  # noqa: E402
from .plan import Plan  # noqa: E402
from .planner import ParetoFront, PlanConfig, Planner  # noqa: E402
from .search import solve  # noqa: E402
from .sensitivity import SensitivityTable  # noqa: E402
from .sensitivity.pairwise import pairwise_terms  # noqa: E402
from .study import load_study  # noqa: E402

__all__ = [
    "Budget", "BudgetError", "DataError", "FormatError", "InfeasibleBudget", "ModelLoadError", "ModelMismatch",
    "MpsearchError", "NoQuantizableSites", "Plan", "PlanError", "SensitivityTable", "Site", "apply",
    "fingerprint", "get_format", "plan", "sensitivity", "sites", "solve",
    "StudyError", "load_study",
    "export", "get_choice", "load_packed",
    "ParetoFront", "PlanConfig", "Planner", "autotune", "pairwise_terms", "pareto",
]
