"""Calibration recovers efficiency factors from latencies a known model produced, and writes a spec."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from mpsearch.errors import UsageError
from mpsearch.hardware_models import AnalyticalCostModel, calibrate, get, load_spec
from mpsearch.hardware_models._spec import parse_spec


def _measure(hw, rng, noise=0.03):
    rows = []
    for n, k in ((1024, 1024), (4096, 4096), (8192, 2048)):
        for m in (1, 16, 128, 1024, 4096):
            for choice in ("bf16", "int8:int8", "int4_g128"):
                t = hw.gemm_cost(m, n, k, choice).latency * float(np.exp(rng.normal(0, noise)))
                rows.append({"m": m, "n": n, "k": k, "choice": choice, "latency_s": t})
    return pd.DataFrame(rows)


def test_calibration_recovers_true_factors(toy_raw, tmp_path):
    # the "real machine": other compute efficiencies, a dequantizing kernel that reaches less of the
    # bandwidth and starts slower than cuBLAS-like ones, and a global launch time of 3 us
    toy_raw["vector"]["rate"]["value"] = 1e14  # fast unpacking: weight-only GEMVs are memory-bound
    truth_raw = copy.deepcopy(toy_raw)
    truth_raw["overhead"] = {"launch": {"value": 3e-6, "source": "truth"}}
    bf, i8 = truth_raw["paths"]["bf16"], truth_raw["paths"]["int8"]
    bf["efficiency"] = {"value": 0.6, "source": "truth"}
    bf["memory_efficiency"] = {"value": 0.7, "source": "truth"}
    bf["dequant_efficiency"] = {"value": 0.2, "source": "truth"}
    bf["dequant_memory_efficiency"] = {"value": 0.35, "source": "truth"}
    bf["dequant_launch"] = {"value": 6e-6, "source": "truth"}
    i8["efficiency"] = {"value": 0.45, "source": "truth"}
    i8["memory_efficiency"] = {"value": 0.6, "source": "truth"}
    truth = AnalyticalCostModel(spec=parse_spec(truth_raw))
    df = _measure(truth, np.random.default_rng(0))

    out = tmp_path / "toy-cal.toml"
    cal = calibrate(parse_spec(toy_raw), df, out=out)
    assert cal.before["mdape"] > 0.3  # the toy spec's factors are far from the truth
    assert cal.after["mdape"] < 0.05 and cal.after["spearman"] > 0.99
    assert cal.keys == ("bf16", "bf16+dequant", "int8")
    e = cal.efficiencies
    assert e.compute["bf16"] == pytest.approx(0.6, rel=0.15)
    assert e.compute["int8"] == pytest.approx(0.45, rel=0.15)
    assert e.memory["bf16"] == pytest.approx(0.7, rel=0.15)
    assert e.memory["bf16+dequant"] == pytest.approx(0.35, rel=0.15)
    assert e.launch["bf16"] == pytest.approx(3e-6, rel=0.25)
    assert e.launch["bf16+dequant"] == pytest.approx(6e-6, rel=0.25)

    spec = load_spec(out)  # a valid spec: every number still sourced
    assert spec.name == "toy-calibrated"
    mem = spec.paths["bf16"].overrides["dequant_memory_efficiency"]
    assert mem.value == pytest.approx(e.memory["bf16+dequant"], rel=1e-3)
    assert mem.source.startswith("calibrated") and "uncalibrated 0.5" in mem.source
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file
    again = get(f"{out}:batch=4")  # usable as --hardware FILE
    assert again.workload.batch == 4
    for m in (1, 512):
        assert again.gemm_cost(m, 4096, 4096, "int4_g128").latency == pytest.approx(
            truth.gemm_cost(m, 4096, 4096, "int4_g128").latency, rel=0.1
        )


def test_calibration_on_h100_shapes_improves_a_misestimated_spec():
    rng = np.random.default_rng(1)
    h100 = get("h100")
    df = _measure(h100, rng, noise=0.0)
    df["latency_s"] *= 1.8  # the real machine is uniformly slower than the spec says
    cal = calibrate("h100", df)
    assert cal.before["mdape"] == pytest.approx(1 - 1 / 1.8, abs=1e-6)
    assert cal.after["mdape"] < 0.1


def test_bad_measurements(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        calibrate("h100", tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("m,n,k,latency_s\n1,2,3,0.1\n")
    with pytest.raises(UsageError, match=r"lack column\(s\) \['choice'\]"):
        calibrate("h100", bad)
    few = pd.DataFrame([{"m": 1, "n": 8, "k": 8, "choice": "fp16:int8", "latency_s": 1e-5}] * 5)
    with pytest.raises(UsageError, match="only 0 measured rows can be modelled"):
        calibrate("a100", few)  # no A100 path takes fp16 weights with int8 activations
