"""Without --formats, the candidates are the hardware target's `default_formats` (stated in the plan)."""

import pytest

import mpsearch
from mpsearch import hardware_models
from mpsearch.formats import DEFAULT_FORMATS, get_choice


@pytest.mark.parametrize("name", ["h100", "a100", "orin", "m55-u55", "xeon-8380"])
def test_every_bundled_target_names_defaults_it_can_run(name):
    names, source = hardware_models.default_formats(name)
    assert source == f"default_formats of hardware spec {name}"
    hw = hardware_models.get(name)
    choices = [get_choice(n) for n in names]
    assert hardware_models.supported(hw, choices) == choices  # nothing the target cannot run
    assert any(c.weight.is_full_precision for c in choices)  # excluded sites have a 16-bit choice


def test_gpu_and_mcu_defaults_are_what_they_deploy():
    gpu = set(hardware_models.default_formats("h100")[0])
    assert {"int4_fr_g128_mse", "int8_fr_g128", "mxfp4", "nvfp4", "fp8_e4m3", "bf16"} == gpu
    mcu = hardware_models.default_formats("m55-u55")[0]
    assert all(get_choice(n).weight.granularity == "pc" for n in mcu if n.startswith("int"))
    names, source = hardware_models.default_formats(None)
    assert names == DEFAULT_FORMATS
    assert source == "mpsearch default (no hardware target)"


def test_plan_without_formats_uses_the_targets_and_says_so(digits):
    plan = mpsearch.plan(digits.model, digits.calibration, budget="6bits", hardware="m55-u55",
                         estimator_settings={"max_probes": 8}, guard_uniform=False)
    assert plan.provenance["formats"] == ["int4", "int8", "fp16"]
    assert plan.provenance["formats_from"] == "default_formats of hardware spec m55-u55"
    assert set(plan.assignments.values()) <= {"int4", "int8", "fp16"}
    given = mpsearch.plan(digits.model, digits.calibration, budget="9bits", hardware="m55-u55", formats="int8,fp16",
                          estimator_settings={"max_probes": 8}, guard_uniform=False)
    assert given.provenance["formats_from"] == "given"
