"""One cache root for every cache: $MPSEARCH_CACHE (the old MPSEARCH_CACHE_DIR still works, with a warning)."""

from pathlib import Path

import pytest

import mpsearch
from mpsearch.cache_root import cache_root
from mpsearch.sensitivity import cache


def test_sensitivity_tables_land_under_the_root(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MPSEARCH_CACHE", str(tmp_path / "root"))
    model, x, y = tiny
    mpsearch.sensitivity(model, (x, y), formats="int4,int8", max_probes=8)
    files = list((tmp_path / "root").rglob("*.json"))
    assert [f.parent for f in files] == [tmp_path / "root" / "sensitivity"] and cache.cache_dir() == files[0].parent


def test_default_root_is_the_user_cache(monkeypatch):
    monkeypatch.delenv("MPSEARCH_CACHE", raising=False)
    monkeypatch.delenv("MPSEARCH_CACHE_DIR", raising=False)
    assert cache_root() == Path.home() / ".cache" / "mpsearch"


def test_old_variable_is_read_with_a_deprecation_warning(tmp_path, monkeypatch):
    monkeypatch.delenv("MPSEARCH_CACHE", raising=False)
    monkeypatch.setenv("MPSEARCH_CACHE_DIR", str(tmp_path / "old"))
    with pytest.warns(DeprecationWarning, match="MPSEARCH_CACHE_DIR is deprecated; set MPSEARCH_CACHE"):
        assert cache_root() == tmp_path / "old"
    monkeypatch.setenv("MPSEARCH_CACHE", str(tmp_path / "new"))  # the new one wins, silently
    assert cache_root() == tmp_path / "new"
