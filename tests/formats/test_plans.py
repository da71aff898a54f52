"""Plans on the bundled digits model mixing every family; byte totals from the documented bits per element."""

import math

import torch

import mpsearch
from mpsearch.formats import format_names

FAST = {"max_probes": 6, "min_probes": 2, "max_samples": 64, "progress": False}


def documented_bits(name: str, shape: tuple[int, ...]) -> int:
    """Storage bits from the formulas in the docs (not from the format classes)."""
    w = name.split(":")[0]
    r = shape[0]
    k = math.prod(shape[1:])
    n = r * k
    if w in ("bf16", "fp16"):
        return 16 * n
    if w == "nvfp4":
        return 4 * n + 8 * r * math.ceil(k / 16) + 32
    if w in ("q4_0", "q4_1", "q5_0", "q5_1", "q8_0"):  # GGUF: bytes per block of 32 (2-byte scale [+ min])
        return 8 * {"q4_0": 18, "q4_1": 20, "q5_0": 22, "q5_1": 24, "q8_0": 34}[w] * r * math.ceil(k / 32)
    if w.startswith("mx"):
        elem = 4 if w == "mxfp4" else int(w[4]) if w.startswith("mxfp") else 8
        return elem * n + 8 * r * math.ceil(k / 32)
    parts = w.split("_")
    bits = int(parts[0][3:]) if parts[0].startswith("int") else int(parts[0][2:])
    group = next((int(p[1:]) for p in parts if p.startswith("g") and p[1:].isdigit()), None)
    scales = 1 if "pt" in parts else r if group is None else r * math.ceil(k / group)
    zeros = scales if "asym" in parts else 0
    return bits * n + 16 * scales + bits * zeros


def test_manual_plan_mixing_families_byte_total(digits):
    m = digits.model
    assign = {"features.0": "fp8_e4m3:fp8_e4m3", "features.3": "mxfp6_e2m3", "features.7": "nvfp4",
              "classifier.1": "int4_asym_g64:int8", "classifier.3": "fp4_e2m1_g32"}
    plan = mpsearch.Plan.from_assignments(m, assign, data=digits.calibration)
    shapes = {s: tuple(m.get_parameter(f"{s}.weight").shape) for s in assign}
    other = sum(p.numel() for n, p in m.named_parameters() if n.removesuffix(".weight") not in assign)
    expected = sum(math.ceil(documented_bits(c, shapes[s]) / 8) for s, c in assign.items()) + 2 * other
    assert plan.totals["bytes"] == expected
    for s, c in assign.items():
        assert plan.sites[s]["bits"] == documented_bits(c, shapes[s])


def test_every_catalogue_format_has_documented_storage_on_digits(digits):
    m = digits.model
    for name in format_names():
        for s in ("features.0", "features.3", "classifier.1"):
            shape = tuple(m.get_parameter(f"{s}.weight").shape)
            assert mpsearch.get_format(name).storage_bits(shape) == documented_bits(name, shape), (name, s)


def test_search_estimator_and_guard_run_with_the_new_formats(digits):
    m = digits.model
    formats = "int4_g32 mxfp4 nvfp4 fp8_e4m3 int8:int8 fp6_e3m2:fp8_e4m3 int4_asym_g64 bf16".split()
    plan = mpsearch.plan(m, digits.calibration, budget="5bits", formats=formats, estimator_settings=FAST)
    assert set(plan.assignments.values()) <= set(formats)
    assert plan.totals["avg_bits"] <= 5 + 1e-9
    shapes = {s: tuple(m.get_parameter(f"{s}.weight").shape) for s in plan.assignments}
    other = sum(p.numel() for n, p in m.named_parameters() if n.removesuffix(".weight") not in shapes)
    assert plan.totals["bytes"] == sum(math.ceil(documented_bits(c, shapes[s]) / 8)
                                       for s, c in plan.assignments.items()) + 2 * other
    uni = plan.measured["uniform"]
    assert set(uni) == set(formats)
    # the guard measured activation quantization: W8A8 differs from W8A16 measured the same way
    w8 = mpsearch.plan(m, digits.calibration, budget="9bits", formats=["int8", "int8:int8"],
                       estimator_settings=FAST).measured["uniform"]
    assert w8["int8"]["cross_entropy"] != w8["int8:int8"]["cross_entropy"]
    for s, c in plan.assignments.items():
        assert ("act_scale" in plan.sites[s]) == (":" in c)
    x = torch.as_tensor(digits.test["x"][:32])
    assert torch.isfinite(mpsearch.apply(m, plan)(x)).all()
