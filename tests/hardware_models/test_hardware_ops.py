"""Paths routed by layer kind (`ops`): the onnxruntime-cpu spec sends each format to the ORT kernel that
really runs it, and calibration keeps conv and linear timings on their own kernels' factors."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from mpsearch.hardware_models import AnalyticalCostModel, calibrate, get
from mpsearch.hardware_models._roofline import Gemm, UnsupportedFormat, gemm_cost
from mpsearch.hardware_models._spec import SpecError, parse_spec


@pytest.mark.parametrize("choice, linear, conv", [
    ("bf16", "fp32", "fp32"),
    ("int4_g32", "nbits", "folded"),
    ("int8", "folded_gemm", "folded"),
    ("int8:int8_asym", "qdq_gemm+dequant", "qlinear"),
])
def test_onnxruntime_cpu_routes_by_layer_kind(choice, linear, conv):
    hw = get("onnxruntime-cpu")
    assert hw.gemm_cost(64, 128, 256, choice).path == linear
    assert hw.gemm_cost(4096, 64, 288, choice, weight_shape=(64, 32, 3, 3)).path == conv


def test_a_layer_kind_no_path_serves_is_refused_by_name():
    hw = get("onnxruntime-cpu")
    assert hw.unsupported("fp8_e4m3") and hw.unsupported("int8:int8_asym") is None
    with pytest.raises(UnsupportedFormat, match="cannot run an embedding layer"):
        gemm_cost(hw.spec, Gemm(4, 64, 32, gather=True), "int8:int8_asym")


def test_unknown_layer_kind_in_a_spec_is_named(toy_raw):
    raw = copy.deepcopy(toy_raw)
    raw["paths"]["int8"]["ops"] = ["attention"]
    with pytest.raises(SpecError, match="unknown layer kind 'attention'"):
        parse_spec(raw)


def test_calibration_fits_conv_and_linear_kernels_separately():
    """Latencies from a 'machine' whose folded convs run at 0.3 of peak and MatMulNBits at 0.15: the fit
    recovers both, which one shared factor could not."""
    base = get("onnxruntime-cpu").spec
    raw = copy.deepcopy(base.raw)
    raw["paths"]["folded"]["efficiency"]["value"] = 0.3
    raw["paths"]["nbits"]["efficiency"]["value"] = 0.15
    truth = AnalyticalCostModel(spec=parse_spec(raw))
    rows = []
    for m in (64, 256, 1024, 4096):
        for choice in ("int4_g32", "bf16"):
            rows.append({"op": "linear", "m": m, "n": 512, "k": 512, "choice": choice,
                         "latency_s": truth.gemm_cost(m, 512, 512, choice).latency})
            rows.append({"op": "conv", "m": m * 16, "n": 64, "k": 288, "in_elems": m * 16 * 32,
                         "out_elems": m * 16 * 64, "choice": choice,
                         "latency_s": truth.gemm_cost(m * 16, 64, 288, choice, in_elems=m * 16 * 32,
                                                      out_elems=m * 16 * 64, weight_shape=(64, 32, 3, 3)).latency})
    cal = calibrate("onnxruntime-cpu", pd.DataFrame(rows))
    assert {"folded", "nbits", "fp32"} <= set(cal.keys)
    assert cal.after["mdape"] < 0.02
    assert cal.efficiencies.compute["folded"] == pytest.approx(0.3, rel=0.15)
    assert cal.efficiencies.compute["nbits"] == pytest.approx(0.15, rel=0.15)
