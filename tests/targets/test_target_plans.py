"""--target through the planner and the CLI: the plan stays inside the profile; check flags a broken plan."""

from __future__ import annotations

import json

import mpsearch
from mpsearch.cli import main
from mpsearch.targets import violations


def test_plan_with_a_target_uses_only_what_it_runs(digits_shared, digits_sensitivity):
    ex = digits_shared
    plan = mpsearch.plan(ex.model, ex.calibration, budget="4.2bits", sensitivity=digits_sensitivity,
                         target="onnxruntime")
    assert set(plan.assignments.values()) <= {"int4", "int8", "bf16"}  # int2/3/5/6 have no ONNX type
    assert plan.provenance["target"] == "onnxruntime" and plan.totals["avg_bits"] <= 4.2
    assert violations("onnxruntime", mpsearch.sites(ex.model), plan.assignments) == []


def test_check_cli_one_line_per_violation(digits_shared, tmp_path, capsys):
    ex = digits_shared
    plan = mpsearch.Plan.from_assignments(ex.model, {"features.3": "int3", "classifier.1": "fp8_e4m3",
                                                     "classifier.3": "int4"})
    plan.save(tmp_path / "p.json")
    assert main(["check", str(tmp_path / "p.json"), "--target", "onnxruntime", "--example", "digits-cnn"]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        "features.3: int3: no onnxruntime kernel runs int3 (weight int3)",
        "classifier.1: fp8_e4m3: no onnxruntime kernel runs fp8_e4m3 (weight fp8_e4m3)"]
    assert "2 violation(s) of onnxruntime" in out.err
    data = json.loads((tmp_path / "p.json").read_text())
    data["assignments"] |= {"features.3": "int4", "classifier.1": "int8"}
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert main(["check", str(tmp_path / "p.json"), "--target", "onnxruntime"]) == 0
    assert main(["check", str(tmp_path / "p.json"), "--target", "onnx-runtime"]) == 2
    assert "unknown target 'onnx-runtime'" in capsys.readouterr().err
