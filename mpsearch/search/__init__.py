"""Searchers over per-site choices: `solve(table, budgets, ...)` and registered searchers by name."""

from . import ilp, local, optuna_search, refine  # noqa: F401  (register 'ilp', 'local', 'optuna', 'refine')
from ._base import Aggregate, Searcher, SearchProblem, Solution, get_searcher, register_searcher, searcher_names
from .ilp import solve

__all__ = [
    "Aggregate", "SearchProblem", "Searcher", "Solution", "get_searcher", "register_searcher", "searcher_names",
    "solve",
]
