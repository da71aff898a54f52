"""Searchers over per-site choices: `solve(table, budgets, ...)` and registered searchers by name."""

from . import ilp  # noqa: F401  (registers 'ilp')
from ._base import Searcher, SearchProblem, Solution, get_searcher, register_searcher, searcher_names
from .ilp import solve

__all__ = ["SearchProblem", "Searcher", "Solution", "get_searcher", "register_searcher", "searcher_names", "solve"]
