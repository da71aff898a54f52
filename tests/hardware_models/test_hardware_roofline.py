"""The roofline arithmetic, pinned on cases computed by hand on the toy spec (conftest.py)."""

from __future__ import annotations

import math

import pytest

from mpsearch.formats import get_choice
from mpsearch.hardware_models import AnalyticalCostModel, UnsupportedFormat, get, supported
from mpsearch.hardware_models._spec import parse_spec


def test_memory_bound_gemv(toy):
    # bf16 GEMV 1x1024 @ 1024x1024: weights 2 MiB + input 2 KiB + output 2 KiB at 1e12 B/s x 0.5
    c = toy.gemm_cost(1, 1024, 1024, "bf16")
    nbytes = 1024 * 1024 * 2 + 1024 * 2 + 1024 * 2
    assert c.bytes == nbytes == 2_101_248
    assert c.bound == "memory" and c.path == "bf16"
    assert c.latency == pytest.approx(1e-6 + nbytes / 0.5e12, rel=1e-12)  # 5.202496 us
    assert c.bops == 1024 * 1024 * 16 * 16
    # energy: MACs x 1 pJ + bytes x 10 pJ (no vector work)
    assert c.energy == pytest.approx(1024 * 1024 * 1e-12 + nbytes * 1e-11, rel=1e-12)


def test_compute_bound_gemm(toy):
    # int8 x int8 4096^3: 2*4096^3 ops at 200e12 x 0.8; bytes: int8 weights + one FP16 scale per row,
    # int8 activations + one FP16 scale for the whole tensor (activations are quantized per tensor), int32 output
    c = toy.gemm_cost(4096, 4096, 4096, "int8:int8")
    w = (4096 * 4096 * 8 + 4096 * 16) / 8
    a = (4096 * 4096 * 8 + 16) / 8
    out = 4096 * 4096 * 4
    assert c.bytes == pytest.approx(w + a + out, rel=1e-12) and c.bytes == 100_671_490
    assert c.bound == "compute" and c.path == "int8"
    assert c.latency == pytest.approx(1e-6 + 2 * 4096**3 / 160e12, rel=1e-12)  # 859.99 us
    assert c.bops == 4096**3 * 8 * 8


def test_weight_only_dequant_cost(toy):
    # int4_g128 weight-only GEMV: unpack 1024^2 weights x 2 ops once (M=1 < tile 64) on 1e12 op/s,
    # plus the bf16 MMA at dequant efficiency 0.5; memory holds 4-bit weights + FP16 scale per 128
    c = toy.gemm_cost(1, 1024, 1024, "int4_g128")
    assert c.path == "bf16+dequant" and c.bound == "compute"
    tc = 2 * 1024 * 1024 / (100e12 * 0.5) + 1024 * 1024 * 2 / 1e12
    assert c.latency == pytest.approx(1e-6 + tc, rel=1e-12)
    assert c.bytes == 1024 * 1024 // 2 + 1024 * 8 * 2 + 2048 + 2048
    # at M=128 the weight tile is unpacked twice (ceil(128/64))
    c2 = toy.gemm_cost(128, 1024, 1024, "int4_g128")
    tc2 = 2 * 128 * 1024 * 1024 / 50e12 + 2 * 1024 * 1024 * 2 / 1e12
    tm2 = (1024 * 1024 / 2 + 1024 * 8 * 2 + 128 * 1024 * 4) / 0.5e12
    assert c2.latency == pytest.approx(1e-6 + max(tc2, tm2), rel=1e-12)


def test_grouped_w_and_a_rescale(toy):
    # int4_g128 weights on the int8 path: unpack n*k*2 ops + one rescale per (m, n, K-group)
    c = toy.gemm_cost(64, 256, 1024, "int4_g128:int8")
    assert c.path == "int8+dequant"
    vec = 256 * 1024 * 2 + 64 * 256 * (1024 // 128)
    t_mma = 2 * 64 * 256 * 1024 / (200e12 * 0.8)  # no dequant_efficiency given: the native one
    w = 256 * 1024 / 2 + 256 * 8 * 2
    a = 64 * 1024 * (8 + 16 / 1024) / 8 + 64 * 256 * 4
    assert c.latency == pytest.approx(1e-6 + max(t_mma + vec / 1e12, (w + a) / 0.5e12), rel=1e-12)


def test_unsupported_format_is_named(toy):
    c = get_choice("int2:int8")
    why = toy.unsupported(c)
    assert why is not None and "int2:int8" in why and "toy" in why and "int2" in why
    with pytest.raises(UnsupportedFormat, match="int2:int8"):
        toy.gemm_cost(1, 8, 8, c)
    assert toy.unsupported(get_choice("int4:int8")) is None  # emulated on the int8 path


def test_supported_filters_and_errors(toy, caplog):
    choices = [get_choice(x) for x in ("bf16", "int2", "int8:int8", "int3:int8")]
    with caplog.at_level("WARNING", logger="mpsearch"):
        kept = supported(toy, choices)
    assert [c.name for c in kept] == ["bf16", "int8:int8"]
    assert "int2, int3:int8" in caplog.text
    from mpsearch.errors import UsageError

    with pytest.raises(UsageError, match="none of the formats can run on toy"):
        supported(toy, [get_choice("int2")])


def test_sharpness_blends_the_two_bounds(toy_raw):
    toy_raw["overhead"]["sharpness"] = {"value": 2, "source": "test"}
    hw = AnalyticalCostModel(spec=parse_spec(toy_raw))
    c = hw.gemm_cost(1, 1024, 1024, "bf16")
    tm = 2_101_248 / 0.5e12
    tc = 2 * 1024 * 1024 / 100e12
    assert c.latency == pytest.approx(1e-6 + math.hypot(tc, tm), rel=1e-12)


def test_conv_is_an_implicit_gemm(toy):
    # 3x3 conv, 64 -> 128 channels, 32x32 input, padding 1: M = 8*32*32, N = 128, K = 64*9
    c = toy.conv_cost(8, 64, 128, (32, 32), (3, 3), "bf16", padding=1)
    g = toy.gemm_cost(
        8 * 32 * 32,
        128,
        64 * 9,
        "bf16",
        in_elems=8 * 64 * 32 * 32,
        out_elems=8 * 128 * 32 * 32,
        weight_shape=(128, 64, 3, 3),
    )
    assert c == g
    assert c.bytes == 128 * 64 * 9 * 2 + 8 * 64 * 32 * 32 * 2 + 8 * 128 * 32 * 32 * 2


def test_h100_int4_weight_only_wins_only_when_memory_bound():
    """The issue's motivating case: INT4 weight-only helps a batch-1 decode, not a big batch."""
    h100 = get("h100")
    small = {f: h100.gemm_cost(1, 8192, 8192, f).latency for f in ("bf16", "int4_g128")}
    big = {f: h100.gemm_cost(8192, 8192, 8192, f).latency for f in ("bf16", "int4_g128", "int8:int8")}
    assert small["int4_g128"] < 0.5 * small["bf16"]
    assert big["int4_g128"] > big["bf16"] > big["int8:int8"]
    assert h100.gemm_cost(1, 8192, 8192, "bf16").bound == "memory"
    assert h100.gemm_cost(8192, 8192, 8192, "bf16").bound == "compute"
