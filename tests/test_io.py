"""The one atomic writer: every kind of output gets the mode a plain write would, and a failed write
leaves the old file and no temp file."""

from __future__ import annotations

import os
import stat

import pandas as pd
import pytest

import mpsearch
from mpsearch.hardware_models import Calibration, load_spec
from mpsearch.hardware_models._spec import bundled_spec_paths
from mpsearch.io import atomic_write, atomic_write_text
from mpsearch.planner import ParetoFront
from mpsearch.study import write_report


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _front() -> ParetoFront:
    points = pd.DataFrame([{"kind": "plan", "label": "a", "budget": 1.0, "cost": 1.0, "avg_bits": 4.0, "bytes": 1.0,
                            "cal_kl": 0.1, "front": True, "assignments": {"s": "int4"}},
                           {"kind": "uniform", "label": "uniform int4", "budget": float("nan"), "cost": 1.0,
                            "avg_bits": 4.0, "bytes": 1.0, "cal_kl": 0.2, "front": False,
                            "assignments": {"s": "int4"}}])
    return ParetoFront(points, "bits", "kl")


def writers(tmp_path, digits):
    """(name, a callable that writes, the files it writes)."""
    plan = mpsearch.Plan.from_assignments(digits.model, {})
    spec = load_spec(bundled_spec_paths()[0])
    return [
        ("plan", lambda: plan.save(tmp_path / "plan.json"), ["plan.json"]),
        ("export", lambda: mpsearch.export(digits.model, plan, tmp_path / "m.safetensors"), ["m.safetensors"]),
        ("front", lambda: _front().save(tmp_path / "front"), ["front.csv", "front.png"]),
        ("report", lambda: write_report(tmp_path / "r.html", df=pd.DataFrame(), title="t", objectives=["bytes:min"],
                                        series=[], png=b""), ["r.html"]),
        ("spec", lambda: Calibration(spec, None, {}, {}).save(tmp_path / "s.toml"), ["s.toml"]),
    ]


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600)])
def test_every_output_gets_a_plain_writes_mode(tmp_path, digits, umask, mask, expected):
    umask(mask)
    for name, write, files in writers(tmp_path, digits):
        write()
        for f in files:
            assert mode(tmp_path / f) == expected, f"{name}: {f} has mode {oct(mode(tmp_path / f))}"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left behind


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def half(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write("ne")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, half)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
