"""The one folder every on-disk cache of mpsearch lives under: `$MPSEARCH_CACHE`, else ~/.cache/mpsearch.

Each cache takes a subfolder (`sensitivity/`, ...), so one variable moves or isolates all of them (the
tests point it at a temporary folder). `MPSEARCH_CACHE_DIR`, the Optuna searcher's old variable, is still
read when `MPSEARCH_CACHE` is unset, with a deprecation warning.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

ENV = "MPSEARCH_CACHE"
_DEPRECATED = "MPSEARCH_CACHE_DIR"


def cache_root() -> Path:
    """The cache root, read from the environment at each call (so a changed variable takes effect)."""
    root = os.environ.get(ENV)
    if not root and os.environ.get(_DEPRECATED):
        warnings.warn(f"{_DEPRECATED} is deprecated; set {ENV} instead (it holds every mpsearch cache)",
                      DeprecationWarning, stacklevel=2)
        root = os.environ[_DEPRECATED]
    return Path(root) if root else Path.home() / ".cache" / "mpsearch"


def cache_dir(name: str) -> Path:
    """The folder of one cache under the root, e.g. `cache_dir('sensitivity')`."""
    return cache_root() / name
