"""Dominance: which points no other point beats on every metric (the Pareto front of a sweep or a study)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import UsageError


def pareto_mask(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """True for each row that no other row dominates (no worse in every metric, better in one).

    Equal rows do not dominate each other, so duplicates of a front point are all on the front.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or v.shape[1] != len(maximize):
        raise UsageError(f"values have shape {v.shape}; expected (rows, {len(maximize)})")
    v = np.where(np.asarray(maximize, dtype=bool), -v, v)  # now every metric is minimized
    keep = np.ones(len(v), dtype=bool)
    for i in range(len(v)):
        no_worse = (v <= v[i]).all(axis=1)
        better = (v < v[i]).any(axis=1)
        keep[i] = not (no_worse & better).any()
    return keep
