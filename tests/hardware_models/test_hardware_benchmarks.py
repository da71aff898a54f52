"""The cost-model benchmark's plumbing on data with a known answer (the GPU run is the lead's)."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

from mpsearch.hardware_models import AnalyticalCostModel, get
from mpsearch.hardware_models._spec import parse_spec

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cost_model_report_on_synthetic_measurements(tmp_path):
    cost_model = _load("cost_model")
    # synthetic "measurements": the H100 spec with each kernel family off by its own factors
    raw = copy.deepcopy(get("h100").spec.raw)
    for path, eff, mem in (("bf16", 0.6, 0.85), ("int8", 0.4, 0.6)):
        raw["paths"][path]["efficiency"] = {"value": eff, "source": "synthetic"}
        raw["paths"][path]["memory_efficiency"] = {"value": mem, "source": "synthetic"}
    raw["paths"]["bf16"]["dequant_memory_efficiency"] = {"value": 0.45, "source": "synthetic"}
    raw["paths"]["bf16"]["dequant_launch"] = {"value": 7e-6, "source": "synthetic"}
    truth, rng = AnalyticalCostModel(spec=parse_spec(raw)), np.random.default_rng(0)
    rows = []
    for n, k in ((1024, 1024), (4096, 4096), (14336, 4096)):
        for m in (1, 32, 512, 8192):
            for c in ("bf16", "int8:int8", "int4_g128"):
                t = truth.gemm_cost(m, n, k, c).latency * float(np.exp(rng.normal(0, 0.03)))
                rows.append({"m": m, "n": n, "k": k, "choice": c, "latency_s": t, "device": "synthetic"})
    csv = tmp_path / "kernels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    s = cost_model.run(csv, "h100", tmp_path, seed=0)
    assert s["uncalibrated, all cases"]["n"] == 36
    assert s["calibrated, held-out half"]["n"] == 18
    assert s["calibrated, held-out half"]["mdape"] < 0.1 < s["uncalibrated, held-out half"]["mdape"]
    report = (tmp_path / "report.md").read_text()
    assert "| calibrated, held-out half | 18 |" in report
    assert (tmp_path / "h100-calibrated.toml").is_file() and (tmp_path / "predictions.csv").is_file()


def test_split_is_stratified_and_disjoint():
    cost_model = _load("cost_model")
    df = pd.DataFrame({"choice": ["a"] * 6 + ["b"] * 4})
    fit, held = cost_model.split_halves(df, seed=3)
    assert not set(fit) & set(held) and len(fit) + len(held) == 10
    assert (df.iloc[fit].choice.value_counts() == df.iloc[held].choice.value_counts()).all()


def test_measure_kernels_dry_run_on_cpu(tmp_path):
    measure = _load("measure_kernels")
    assert (
        measure.main(
            [
                "--device",
                "cpu",
                "--dry-run",
                "--out",
                str(tmp_path),
                "--kernels",
                "bf16,int8:int8",
                "--repeats",
                "2",
            ]
        )
        == 0
    )
    df = pd.read_csv(tmp_path / "kernels.csv")
    assert set(df.choice) == {"bf16", "int8:int8"} and (df.latency_s > 0).all()
    assert not (df[df.choice == "int8:int8"].m <= 16).any()  # _int_mm needs M > 16
    assert {"m", "n", "k", "in_elems", "out_elems", "choice", "latency_s"} <= set(df.columns)


def test_h200_rankings_from_the_committed_table(tmp_path):
    """The measured H200 table, calibrated on half: the held-out fastest format is predicted per shape."""
    ranking = _load("kernel_ranking")
    out = tmp_path / "rank.md"
    assert ranking.main(["--csv", str(ROOT / "benchmarks/results/h200_kernels.csv"), "--hardware", "h200",
                         "--out", str(out)]) == 0
    text = out.read_text()
    line = next(x for x in text.splitlines() if x.startswith("Shapes with"))
    fastest, shapes = map(int, line.split("fastest format predicted: ")[1].split(";")[0].split("/"))
    assert shapes == 28 and fastest >= 26


def test_runtime_latency_ranking_rule():
    rl = _load("runtime_latency")
    assert rl.rank([3.0, 1.0, 2.0]) == [3, 1, 2]
    # 1.00 vs 1.01 is a measured tie, whatever the prediction; 1.0 vs 0.5 must be predicted in order
    assert rl.agreement([1.0, 1.01, 0.5], [1.1, 1.0, 0.6], tie=0.05) == (True, [])
    ok, bad = rl.agreement([1.0, 0.5], [0.4, 0.6], tie=0.05)
    assert not ok and bad == ["1 vs 2 (measured 100% apart)"]
