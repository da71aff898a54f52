"""Spec files: every number has a source; the bundled targets load and register; the registry's forms."""

from __future__ import annotations

import pytest

from mpsearch.errors import UsageError
from mpsearch.formats import get_choice
from mpsearch.hardware_models import SpecError, cost_model_names, get, load_spec
from mpsearch.hardware_models._spec import bundled_spec_paths, dumps_toml, parse_spec

BUNDLED = {"h100", "h200", "a100", "orin", "xeon-8380", "m55-u55", "onnxruntime-cpu"}


def test_bundled_targets_are_registered():
    assert BUNDLED <= set(cost_model_names())
    assert {p.stem for p in bundled_spec_paths()} == BUNDLED


@pytest.mark.parametrize("path", bundled_spec_paths(), ids=lambda p: p.stem)
def test_every_number_has_a_source(path):
    spec = load_spec(path)  # the loader refuses any bare number
    nums = spec.numbers()
    assert len(nums) >= 15
    for key, n in nums:
        assert len(n.source) > 10, key
    # bf16 must run (natively or emulated): relative budgets are measured against the all-bf16 model
    hw = get(spec.name)
    assert hw.unsupported(get_choice("bf16")) is None


def test_datasheet_numbers():
    h = load_spec(next(p for p in bundled_spec_paths() if p.stem == "h100"))
    assert h.paths["bf16"].peak.value == 989.4e12 and h.paths["fp8"].peak.value == 1978.9e12
    assert h.bandwidth.value == 3.35e12 and "3.35TB/s" in h.bandwidth.source
    a = get("a100").spec
    assert a.paths["int4"].peak.value == 1248e12 and "fp8" not in a.paths


def test_bare_number_is_refused(toy_raw):
    toy_raw["memory"]["bandwidth"] = 1e12
    with pytest.raises(SpecError, match="memory.bandwidth has no source"):
        parse_spec(toy_raw)
    toy_raw["memory"]["bandwidth"] = {"value": 1e12, "source": ""}
    with pytest.raises(SpecError, match="memory.bandwidth"):
        parse_spec(toy_raw)


def test_unknown_operand_class_is_refused(toy_raw):
    toy_raw["paths"]["int8"]["weights"] = ["int9"]
    with pytest.raises(SpecError, match="unknown operand class 'int9'"):
        parse_spec(toy_raw)


def test_toml_round_trip(toy_raw, tmp_path):
    spec = parse_spec(toy_raw)
    f = tmp_path / "toy.toml"
    f.write_text(dumps_toml(spec.raw))
    again = load_spec(f)
    assert again.numbers() == spec.numbers() and again.paths == spec.paths


def test_get_forms(toy_raw, tmp_path):
    hw = get("h100:batch=32,seq=128")
    assert hw.workload.batch == 32 and hw.workload.seq_len == 128 and hw.name == "h100"
    assert get("h100", batch=4).workload.batch == 4
    f = tmp_path / "toy.toml"
    f.write_text(dumps_toml(parse_spec(toy_raw).raw))
    assert get(f"{f}:batch=2").spec.name == "toy"
    with pytest.raises(UsageError, match="unknown hardware 'tpu'"):
        get("tpu")
    with pytest.raises(UsageError, match="cannot parse workload"):
        get("h100:batch=two")
    with pytest.raises(UsageError, match="must be positive"):
        get("h100", batch=0)


def test_fp8_runs_only_where_there_are_fp8_tensor_cores():
    fp8 = _fp8_choice()
    assert "fp8 weights with fp8 activations" in get("a100").unsupported(fp8)
    assert get("m55-u55").unsupported(fp8) and get("xeon-8380").unsupported(fp8)
    assert get("h100").unsupported(fp8) is None and get("h100").route_key(fp8) == "fp8"


def test_targets_disagree_where_the_hardware_does():
    assert get("h100").route_key("int4:int4") == "int8+dequant"  # no INT4 tensor cores on Hopper
    assert get("a100").route_key("int4:int4") == "int4"
    assert get("m55-u55").route_key("bf16") == "fp32+dequant"  # no 16-bit float on the NPU


def _fp8_choice():
    return get_choice("fp8_e4m3:fp8_e4m3")  # registered: a FormatError fails the test instead of skipping it
