"""Budget grammar and resolution against the 16-bit reference."""

from __future__ import annotations

import pytest

from mpsearch.budget import Budget, Reference, parse_budgets, resolve
from mpsearch.errors import BudgetError


@pytest.mark.parametrize("text, metric, value, relative", [
    ("4MB", "memory", 4e6, False),
    ("900KiB", "memory", 900 * 1024, False),
    ("1.5 GiB", "memory", 1.5 * 2**30, False),
    ("123B", "memory", 123, False),
    ("4.5bits", "bits", 4.5, False),
    ("3bit", "bits", 3, False),
    ("30%", "memory", 0.30, True),
    ("latency=2ms", "latency", 2e-3, False),
    ("latency=250us", "latency", 250e-6, False),
    ("energy=5mJ", "energy", 5e-3, False),
    ("bops=2G", "bops", 2e9, False),
    ("memory=45%", "memory", 0.45, True),
    ("bits=4.25", "bits", 4.25, False),
])
def test_parse(text, metric, value, relative):
    b = Budget.parse(text)
    assert (b.metric, b.relative) == (metric, relative)
    assert b.value == pytest.approx(value)
    back = Budget.parse(str(b))  # printing round-trips
    assert (back.metric, back.relative) == (b.metric, b.relative) and back.value == pytest.approx(b.value)


@pytest.mark.parametrize("text", ["4", "four MB", "4XB", "latency=2", "speed=3ms", "-1MB", "0bits", "4MB%"])
def test_bad_budgets_raise_one_clear_error(text):
    with pytest.raises(BudgetError) as e:
        Budget.parse(text)
    assert "\n" not in str(e.value)


def test_several_budgets_combine_and_resolve():
    bs = parse_budgets(["4MB", "4.5bits,latency=2ms"])
    assert [b.metric for b in bs] == ["memory", "bits", "latency"]
    ref = Reference(full={"bytes": 10e6, "latency": 5e-3}, fixed={"bytes": 1e6, "latency": 1e-3}, weights=1000)
    limits = resolve(bs, ref)
    assert limits == pytest.approx({"bytes": 3e6, "bits": 4500, "latency": 1e-3})
    rel = resolve(parse_budgets(["30%", "memory=50%"]), ref)  # the tighter memory budget wins
    assert rel["bytes"] == pytest.approx(0.3 * 10e6 - 1e6)


def test_latency_budget_without_hardware_model():
    ref = Reference(full={"bytes": 1.0}, fixed={}, weights=1)
    with pytest.raises(BudgetError, match="--hardware"):
        resolve(parse_budgets("latency=1ms"), ref)


def test_infeasible_budget_speaks_the_budgets_terms(digits_shared):
    """The error states what the user asked for and the least the model can take, in the same terms:
    bits per weight for a bits budget; whole-model bytes (16-bit non-site parameters included) for memory."""
    from mpsearch import plan, sites
    from mpsearch.errors import InfeasibleBudget

    ex = digits_shared
    ss = sites(ex.model, ex.calibration["x"][:2])
    n = sum(s.numel for s in ss)
    int2_bits = sum(2 * s.numel + 16 * s.shape[0] for s in ss)  # 2-bit codes + an fp16 scale per output channel
    other = sum(p.numel() for name, p in ex.model.named_parameters() if name not in {s.param for s in ss})
    with pytest.raises(InfeasibleBudget, match=rf"allows 1\.000 bits/weight but the smallest achievable is "
                                               rf"{int2_bits / n:.3f} bits/weight"):
        plan(ex.model, ex.calibration, "1bits", formats="int2,int4,bf16", guard_uniform=False)
    least_kb = (sum(-(-(2 * s.numel + 16 * s.shape[0]) // 8) for s in ss) + 2 * other) / 1e3
    with pytest.raises(InfeasibleBudget, match=rf"allows 10KB but the smallest achievable is {least_kb:.4g}KB "
                                               rf"\(every site at its cheapest format, plus {2 * other / 1e3:.4g}KB"):
        plan(ex.model, ex.calibration, "10KB", formats="int2,int4,bf16", guard_uniform=False)


@pytest.mark.parametrize("text", ["latency=1.23456ms", "energy=5.123456mJ", "bops=2.345678G", "4.123456bits",
                                  "memory=12.3456%", "3.14159265MB"])
def test_budget_text_keeps_full_precision(text):
    """A plan file records the budget asked for, not a 4-digit rounding of it."""
    b = Budget.parse(text)
    assert Budget.parse(str(b)).value == pytest.approx(b.value, rel=1e-12)
    assert str(b).replace("memory=", "") == text.replace("memory=", "")


@pytest.mark.parametrize("text, fix", [("4Mb", "4MB"), ("4mb", "4MB"), ("memory=2Gb", "2GB"), ("900kib", "900KiB")])
def test_a_lowercase_b_is_bits_and_refused_for_memory(text, fix):
    with pytest.raises(BudgetError, match=f"is in bits.*write {fix} for bytes"):
        Budget.parse(text)
    assert Budget.parse(fix).value == {"4MB": 4e6, "2GB": 2e9, "900KiB": 900 * 1024}[fix]
