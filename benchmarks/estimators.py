"""Which estimator ranks sites best? Spearman correlation of predicted Ω with the measured loss increase.

    python benchmarks/estimators.py [--models digits-cnn,minilm-l6] [--device cpu|cuda]
        [--out out/bench_estimators]

Ground truth: quantize one site to INT2/INT3/INT4 (per-channel) and measure the objective increase on
the example's held-out test split (digits: cross-entropy; MiniLM-L6: mse to the FP embeddings).
Each estimator sees only the calibration split (or, for zeroq, no data at all). Reported: Spearman ρ
over all (site, format) pairs, the mean ρ within one format (ranking sites against each other — what
the search actually needs), and each estimator's wall time with the cache off.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import spearmanr

import mpsearch
from mpsearch.data import as_data
from mpsearch.examples import load_example
from mpsearch.formats import parse_choices
from mpsearch.objectives import get_objective
from mpsearch.sensitivity import distill, get_estimator

FORMATS = "int2,int3,int4"
# (label, estimator, settings, data source)
ESTIMATORS = [
    ("hessian (auto)", "hessian", {}, "cal"),
    ("hessian (hutchinson)", "hessian", {"method": "hutchinson", "max_probes": 100}, "cal"),
    ("fisher", "fisher", {}, "cal"),
    ("taylor (1st order)", "taylor", {}, "cal"),
    ("output (ModelOpt)", "output", {}, "cal"),
    ("measured", "measured", {}, "cal"),
    ("zeroq (KL, no data)", "measured", {}, "zeroq"),
]


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def run_model(name: str, device: str, skip: set[str]) -> pd.DataFrame:
    ex = load_example(name)
    model = ex.model.to(device).eval()
    obj = get_objective(getattr(ex, "objective", None) or "cross_entropy")
    cal = as_data(ex.calibration, 64).to(device)
    test = as_data(ex.test, 64).to(device)
    if obj.needs_reference:
        cal, test = cal.with_reference(model), test.with_reference(model)
    site_list = mpsearch.sites(model, cal.first_x)
    choices = parse_choices(FORMATS, [])
    t0 = time.perf_counter()
    truth = get_estimator("measured").estimate(model, site_list, choices, test, obj).frame
    print(
        f"{name}: {len(site_list)} sites; ground truth on the test split in {time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    # warm-up (first-call costs of torch.func, einsum paths, op recording) outside the timings
    get_estimator("hessian").estimate(model, site_list[:1], choices, cal.take(2), obj)
    rows = []
    for label, est_name, settings, source in ESTIMATORS:
        if label in skip or (
            source == "zeroq" and not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
        ):
            continue
        _sync(device)
        t0 = time.perf_counter()
        if source == "zeroq":
            data = distill(model, tuple(cal.first_x.shape[1:]))
            est_obj = get_objective("kl")
            data = data.with_reference(model)
        else:
            data, est_obj = cal, obj
        table = get_estimator(est_name, **settings).estimate(model, site_list, choices, data, est_obj)
        _sync(device)
        secs = time.perf_counter() - t0
        m = truth.merge(table.frame, on=["site", "format"], suffixes=("_true", "_pred"))
        rho_all = spearmanr(m.omega_pred, m.omega_true).statistic
        per = [spearmanr(g.omega_pred, g.omega_true).statistic for _, g in m.groupby("format")]
        rows.append(
            {
                "model": name,
                "estimator": label,
                "spearman_all": round(float(rho_all), 3),
                "spearman_within_format": round(float(sum(per) / len(per)), 3),
                "seconds": round(secs, 2),
                "method": table.settings.get("method", ""),
            }
        )
        print(
            f"  {label:22s} rho_all {rho_all:.3f}  rho_within {sum(per) / len(per):.3f}  {secs:.2f} s",
            flush=True,
        )
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits-cnn,minilm-l6")
    ap.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    ap.add_argument("--skip", default="", help="estimator labels to leave out, comma-separated")
    ap.add_argument("--out", type=Path, default=Path("out/bench_estimators"))
    a = ap.parse_args(argv)
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    frames = []
    for name in a.models.split(","):
        try:
            frames.append(run_model(name.strip(), a.device, skip))
        except mpsearch.MpsearchError as e:  # e.g. the transformers extra is not installed
            print(f"{name}: skipped ({e})", flush=True)
    df = pd.concat(frames, ignore_index=True)
    print()
    print(df.to_string(index=False))
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / f"estimators_{a.device}.csv", index=False)
    lines = [
        "| model | estimator | Spearman (all pairs) | Spearman (within format) | seconds |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r.model} | {r.estimator} | {r.spearman_all:.3f} | {r.spearman_within_format:.3f} "
        f"| {r.seconds:.2f} |"
        for r in df.itertuples()
    ]
    (a.out / f"estimators_{a.device}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
