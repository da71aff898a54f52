"""Sensitivity tables are cached by model, data and settings, and reused across plans."""

import json

import torch

import mpsearch
import mpsearch.examples
from mpsearch.sensitivity import cache, get_estimator


def test_second_plan_reuses_the_cached_table(monkeypatch, tmp_path):
    ex = mpsearch.examples.load_example("digits-cnn")
    calls = []
    orig = get_estimator("hessian").__class__.estimate

    def counting(self, *a, **k):
        calls.append(self.name)
        return orig(self, *a, **k)

    monkeypatch.setattr(get_estimator("hessian").__class__, "estimate", counting)
    p1 = mpsearch.plan(ex.model, ex.calibration, budget="4bits", guard_uniform=False)
    p2 = mpsearch.plan(ex.model, ex.calibration, budget="6bits", guard_uniform=False)
    assert calls == ["hessian"]
    assert p2.provenance["estimator_settings"].get("cached") is True
    assert p1.totals["avg_bits"] <= 4 and p2.totals["avg_bits"] > p1.totals["avg_bits"]
    files = list(cache.cache_dir().glob("*.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["estimator"] == "hessian"
    # other settings, other data, or no cache: recomputed
    mpsearch.plan(
        ex.model, ex.calibration, budget="4bits", guard_uniform=False, estimator_settings={"tol": 0.02}
    )
    sub = {"x": ex.calibration["x"][:100], "y": ex.calibration["y"][:100]}
    mpsearch.plan(ex.model, sub, budget="4bits", guard_uniform=False)
    mpsearch.plan(ex.model, ex.calibration, budget="4bits", guard_uniform=False, cache=False)
    assert len(calls) == 4


def test_a_corrupt_cache_file_is_recomputed_and_a_changed_model_misses():
    ex = mpsearch.examples.load_example("digits-cnn")
    t1 = mpsearch.sensitivity(ex.model, ex.calibration, estimator="taylor", formats="int4")
    (f,) = cache.cache_dir().glob("*.json")
    f.write_text("{not json")
    t2 = mpsearch.sensitivity(ex.model, ex.calibration, estimator="taylor", formats="int4")
    assert "cached" not in t2.settings and t2.frame.omega.tolist() == t1.frame.omega.tolist()
    t3 = mpsearch.sensitivity(ex.model, ex.calibration, estimator="taylor", formats="int4")
    assert t3.settings.get("cached") is True
    with torch.no_grad():
        ex.model.classifier[3].weight.mul_(1.01)
    t4 = mpsearch.sensitivity(ex.model, ex.calibration, estimator="taylor", formats="int4")
    assert "cached" not in t4.settings


def test_the_key_covers_the_code_the_estimator_depends_on(monkeypatch):
    """A change to _persample (or any mpsearch module) must miss the cache, not only the estimator's file."""
    from pathlib import Path

    est = get_estimator("hessian")
    cache._package_hash.cache_clear()
    before = cache._code_hash(est)
    real = Path.read_bytes

    def edited(self):
        data = real(self)
        return data + b"\n# edited" if self.name == "_persample.py" else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    cache._package_hash.cache_clear()
    try:
        assert cache._code_hash(est) != before
    finally:
        monkeypatch.undo()
        cache._package_hash.cache_clear()
    assert cache._code_hash(est) == before


def test_a_passed_table_must_fit_the_model_and_cover_every_row(tiny):
    import pytest

    from mpsearch.errors import UsageError

    model, x, y = tiny
    data = {"x": x, "y": y}
    table = mpsearch.sensitivity(model, data, estimator="taylor", formats="int4,int8")
    mpsearch.plan(model, data, budget="6bits", formats="int4,int8", sensitivity=table, guard_uniform=False)
    other = type(model)()
    with pytest.raises(UsageError, match="estimated on another model"):
        mpsearch.plan(other, data, budget="6bits", formats="int4,int8", sensitivity=table, guard_uniform=False)
    table.frame = table.frame[~((table.frame.site == "fc1") & (table.frame.format == "int4"))]
    with pytest.raises(UsageError, match="no rows for fc1/int4"):
        mpsearch.plan(model, data, budget="6bits", formats="int4,int8", sensitivity=table, guard_uniform=False)
