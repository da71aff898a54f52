"""On-disk cache of sensitivity tables, so a second plan with another budget skips the estimator.

Key: model fingerprint + calibration-data digest + estimator name and settings + objective + choices
+ sites + seed + the estimator's code (its module's source hash), so a changed model, data set,
setting or mpsearch version never reuses a stale table. Location: $MPSEARCH_CACHE, else
~/.cache/mpsearch; files are JSON, written atomically.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from pathlib import Path

from torch import nn

from .._version import __version__
from ..data import CalibrationData
from ..formats import Choice
from ..io import atomic_write_text
from ..model import Site, fingerprint
from ..rounding import rounding_key
from ._base import Estimator, SensitivityTable

log = logging.getLogger("mpsearch")
_VOLATILE = {"progress"}  # settings that do not change the numbers


def cache_dir() -> Path:
    return Path(os.environ.get("MPSEARCH_CACHE") or Path.home() / ".cache" / "mpsearch") / "sensitivity"


def _code_hash(est: Estimator) -> str:
    try:
        src = Path(inspect.getfile(type(est))).read_bytes()
    except (OSError, TypeError):
        src = type(est).__qualname__.encode()
    return hashlib.sha256(src).hexdigest()[:16]


def cache_key(
    model: nn.Module,
    data: CalibrationData,
    est: Estimator,
    objective,
    sites: list[Site],
    choices: list[Choice],
    seed: int,
) -> str:
    parts = {
        "version": __version__,
        "code": _code_hash(est),
        "model": fingerprint(model),
        "data": data.digest(),
        "estimator": est.name,
        "objective": getattr(objective, "name", str(objective)),
        "seed": seed,
        "settings": {k: v for k, v in sorted(est.settings.items()) if k not in _VOLATILE},
        "choices": [c.name for c in choices],
        "sites": [s.name for s in sites],
        "rounding": rounding_key(),  # GPTQ-rounded weights have other sensitivities than RTN's
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def load(key: str) -> SensitivityTable | None:
    p = cache_dir() / f"{key}.json"
    try:
        return SensitivityTable.from_dict(json.loads(p.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError):
        return None  # absent or unreadable: recompute (and overwrite)


def store(key: str, table: SensitivityTable) -> None:
    try:
        atomic_write_text(cache_dir() / f"{key}.json", json.dumps(table.to_dict(), default=str))
    except OSError as e:  # a read-only home must not stop a plan
        log.warning("could not write the sensitivity cache (%s); set MPSEARCH_CACHE to a writable folder", e)


def estimate(
    est: Estimator,
    model: nn.Module,
    sites: list[Site],
    choices: list[Choice],
    data: CalibrationData,
    objective,
    seed: int = 0,
    use_cache: bool = True,
) -> SensitivityTable:
    """`est.estimate(...)`, served from the cache when the same inputs were estimated before."""
    if not use_cache:
        return est.estimate(model, sites, choices, data, objective, seed=seed)
    key = cache_key(model, data, est, objective, sites, choices, seed)
    hit = load(key)
    if hit is not None:
        log.info("sensitivity from cache %s", cache_dir() / f"{key}.json")
        hit.settings = {**hit.settings, "cached": True}
        return hit
    table = est.estimate(model, sites, choices, data, objective, seed=seed)
    store(key, table)
    return table
