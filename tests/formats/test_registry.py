"""The name grammar, the catalogue and the documented bits per element."""

import math

import pytest

from mpsearch.errors import FormatError
from mpsearch.formats import format_names, get_choice, get_format

ISSUE_NAMES = ("int4 int4_g128 int8_pt int4_asym_g64 fp8_e4m3 fp8_e5m2 fp6_e3m2 fp6_e2m3 fp4_e2m1_g32 "
               "mxfp8_e4m3 mxfp8_e5m2 mxfp6_e3m2 mxfp6_e2m3 mxfp4 mxint8 nvfp4 bf16 fp16").split()
FAMILIES = ["int"] * 4 + ["minifloat"] * 5 + ["mx"] * 6 + ["nvfp4"] + ["keep"] * 2
FAMILY = dict(zip(ISSUE_NAMES, FAMILIES, strict=True))


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_issue_names_parse_to_their_family_and_round_trip(name):
    f = get_format(name)
    assert f.name == name and f.family == FAMILY[name]
    assert name in format_names()
    assert get_format(f.name) == f


@pytest.mark.parametrize("name,expected", [
    # documented bits per element on a 4096 x 4096 weight (OCP MX v1.0, NVFP4, FP16 scales, b-bit zeros)
    ("mxfp4", 4.25), ("mxfp6_e3m2", 6.25), ("mxfp8_e4m3", 8.25), ("mxint8", 8.25),
    ("nvfp4", 4.5 + 32 / 4096**2), ("int4_g128", 4.125), ("int4_asym_g128", 4 + 16 / 128 + 4 / 128),
    ("int8", 8 + 16 / 4096), ("int8_pt", 8 + 16 / 4096**2), ("fp4_e2m1_g32", 4.5),
    ("fp8_e4m3", 8 + 16 / 4096), ("int4_asym_g64", 4 + 20 / 64), ("bf16", 16.0),
])
def test_documented_bits_per_element(name, expected):
    assert get_format(name).bits_per_element((4096, 4096)) == pytest.approx(expected, rel=0, abs=1e-12)


def test_partial_blocks_still_store_one_scale():
    # a 3x3 conv with 1 input channel: K = 9, one (partial) MX block per row, one NVFP4 block per row
    assert get_format("mxfp4").storage_bits((32, 1, 3, 3)) == 32 * 9 * 4 + 32 * 8
    assert get_format("nvfp4").storage_bits((32, 1, 3, 3)) == 32 * 9 * 4 + 32 * 8 + 32
    assert get_format("int4_g128").storage_bits((10, 300)) == 3000 * 4 + 10 * math.ceil(300 / 128) * 16


@pytest.mark.parametrize("name,canonical", [
    ("INT4_G128", "int4_g128"), ("int4_pc", "int4"), (" mxfp4 ", "mxfp4"), ("int4_g128_mse", "int4_g128_mse"),
    ("int3_octav", "int3_octav"), ("int8_asym_p9999", "int8_asym_p9999"),
    ("fp4_e2m1_g16_mse", "fp4_e2m1_g16_mse"),
])
def test_grammar_variants(name, canonical):
    assert get_format(name).name == canonical


@pytest.mark.parametrize("bad,hint", [
    ("mxfp3", "mxfp4"), ("int4_g128x", "int4_g128"), ("nvfp8", "nvfp4"), ("fp8_e3m4", "fp8_e4m3"),
])
def test_wrong_name_lists_close_matches(bad, hint):
    with pytest.raises(FormatError, match="did you mean") as e:
        get_format(bad)
    assert hint in str(e.value)


@pytest.mark.parametrize("bad,why", [
    ("int4_g0", "group size"), ("fp8_e4m3_octav", "OCTAV"), ("int4_asym_octav", "OCTAV"),
])
def test_malformed_names_say_why(bad, why):
    with pytest.raises(FormatError, match=why):
        get_format(bad).quantize(__import__("torch").ones(2, 4))


def test_choices_pair_weight_and_activation_formats():
    c = get_choice("int8:int8")
    assert (c.weight.name, c.act.name, c.act_bits, c.name) == ("int8", "int8", 8.0, "int8:int8")
    assert get_choice("fp8_e4m3:fp8_e4m3").act_bits == 8.0
    assert get_choice("int4").act is None and get_choice("int4").act_bits == 16.0
    assert get_choice("int4:bf16") == get_choice("int4")  # a 16-bit activation is no activation format
    assert get_choice("nvfp4:int8_asym_mse").act.name == "int8_asym_mse"
    for bad, why in [("int8:int4_g128", "per tensor"), ("int8:mxfp4", "cannot quantize activations"),
                     ("int8:nvfp4", "cannot quantize activations"), ("int8:fp8_e4m3_pt", "per tensor")]:
        with pytest.raises(FormatError, match=why):
            get_choice(bad)
