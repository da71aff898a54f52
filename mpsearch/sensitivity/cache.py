"""On-disk cache of sensitivity tables, so a second plan with another budget skips the estimator.

Key: model fingerprint + calibration-data digest + estimator name and settings + objective + choices
+ sites + seed + the code (every source file of the mpsearch package — the estimators lean on
`_persample`, `_curvature`, `_structure`, the formats, … — plus the estimator's own file when it is a
plug-in outside the package) + `__version__`, so a changed model, data set, setting or mpsearch
version never reuses a stale table. Location: `sensitivity/` under the one cache root
(`mpsearch.cache_root`: $MPSEARCH_CACHE, else ~/.cache/mpsearch); files are JSON, written atomically.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
from pathlib import Path

from torch import nn

from .._version import __version__
from ..cache_root import cache_dir as _cache_subdir
from ..data import CalibrationData
from ..formats import Choice
from ..io import atomic_write_text
from ..model import Site, fingerprint
from ..rounding import rounding_key
from ._base import Estimator, SensitivityTable

log = logging.getLogger("mpsearch")


def cache_dir() -> Path:
    return _cache_subdir("sensitivity")


@functools.lru_cache(maxsize=1)
def _package_hash() -> str:
    """sha256 of every .py file of the installed mpsearch package (read once per process)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _code_hash(est: Estimator) -> str:
    h = hashlib.sha256(_package_hash().encode())
    try:
        h.update(Path(inspect.getfile(type(est))).read_bytes())
    except (OSError, TypeError):
        h.update(type(est).__qualname__.encode())
    return h.hexdigest()[:16]


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
        "settings": est.recorded_params(),  # effective values, defaults included
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
        table = est.estimate(model, sites, choices, data, objective, seed=seed)
        table.model = fingerprint(model)
        return table
    key = cache_key(model, data, est, objective, sites, choices, seed)
    hit = load(key)
    if hit is not None:
        log.info("sensitivity from cache %s", cache_dir() / f"{key}.json")
        hit.settings = {**hit.settings, "cached": True}
        return hit
    table = est.estimate(model, sites, choices, data, objective, seed=seed)
    table.model = fingerprint(model)
    store(key, table)
    return table
