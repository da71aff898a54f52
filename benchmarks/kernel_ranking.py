"""Do the calibrated GPU cost model's format rankings match the measured kernels, shape by shape?

Reads the table `measure_kernels.py` writes on the GPU machine (bf16 `F.linear`, INT8 `torch._int_mm`, FP8
`torch._scaled_mm`, INT4 weight-only `torch._weight_int4pack_mm`, INT8 weight-only `torch._weight_int8pack_mm`
at Llama-like (N, K) and token counts M), calibrates the spec on one half of the rows (stratified by format,
seeded; `mpsearch hardware calibrate` does the same fit) and, for every (M, N, K) measured in at least two
formats, compares the ranking of the formats by measured latency with the ranking the calibrated model
predicts, the rows of that shape having been held out of the fit where they fell in the other half.
Two formats measured less than --tie apart are a tie: a shape "agrees" when every pair measured further
apart is predicted in the same order.

    python benchmarks/measure_kernels.py --out out/h200 --kernels bf16,int8:int8,fp8_e4m3:fp8_e4m3,int4_g128,int8
    python benchmarks/kernel_ranking.py --csv out/h200/kernels.csv --hardware h200 --out out/h200-ranking.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from mpsearch.hardware_models import calibrate, get, read_measurements
from mpsearch.hardware_models._calibrate import error_summary, fitted_lines, row_components
from mpsearch.hardware_models._roofline import Efficiencies, latency


def predicted(spec, df: pd.DataFrame, eff: Efficiencies | None = None) -> np.ndarray:
    comps, kept, _ = row_components(spec, df)
    assert len(kept) == len(df), "every row must be modelled"
    eff = eff or Efficiencies.of(spec)
    return np.array([latency(spec, c, eff) for c in comps])


def halves(df: pd.DataFrame, seed: int) -> np.ndarray:
    """A boolean mask: True for the calibration half (half of every format's rows)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(df), bool)
    for _, idx in df.groupby("choice").groups.items():
        idx = rng.permutation(np.asarray(idx))
        mask[idx[: len(idx) // 2]] = True
    return mask


def shape_rows(df: pd.DataFrame, tie: float) -> list[dict]:
    out = []
    for (m, n, k), g in df.groupby(["m", "n", "k"], sort=True):
        if len(g) < 2:
            continue
        meas, pred, names = g.latency_s.to_numpy(), g.pred_s.to_numpy(), g.choice.tolist()
        bad = [(names[i], names[j]) for i in range(len(g)) for j in range(i + 1, len(g))
               if abs(meas[i] - meas[j]) / min(meas[i], meas[j]) > tie and (meas[i] < meas[j]) != (pred[i] < pred[j])]
        out.append({"m": m, "n": n, "k": k, "measured": " < ".join(np.array(names)[np.argsort(meas)]),
                    "predicted": " < ".join(np.array(names)[np.argsort(pred)]),
                    "fastest_agrees": names[int(np.argmin(meas))] == names[int(np.argmin(pred))],
                    "agrees": not bad, "rho": float(spearmanr(meas, pred).statistic) if len(g) > 2 else np.nan,
                    "bad": bad})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--csv", required=True, type=Path)
    p.add_argument("--hardware", default="h200")
    p.add_argument("--out", required=True, type=Path, help="markdown report")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tie", type=float, default=0.05)
    args = p.parse_args(argv)
    df = read_measurements(args.csv)
    spec = get(args.hardware).spec
    fit = halves(df, args.seed)
    cal = calibrate(spec, df[fit], out=args.out.with_suffix(".toml"))
    df["pred_s"] = predicted(cal.spec, df)
    df["uncal_s"] = predicted(spec, df)
    rows = shape_rows(df, args.tie)
    held = df[~fit]
    lines = [f"## Format ranking per GEMM shape: {args.hardware} spec calibrated on half of {args.csv.name} "
             f"({df.device.iloc[0] if 'device' in df else ''}, torch {df.torch.iloc[0] if 'torch' in df else ''})", "",
             f"Held-out rows: MdAPE {error_summary(held.uncal_s, held.latency_s)['mdape']:.1%} uncalibrated -> "
             f"{error_summary(held.pred_s, held.latency_s)['mdape']:.1%} calibrated, Spearman "
             f"{error_summary(held.pred_s, held.latency_s)['spearman']:.3f}.", "",
             *[f"- {line}" for line in fitted_lines(cal)], "",
             f"Shapes with >= 2 formats: {len(rows)}; fastest format predicted: "
             f"{sum(r['fastest_agrees'] for r in rows)}/{len(rows)}; whole ranking agrees beyond a {args.tie:.0%} "
             f"tie: {sum(r['agrees'] for r in rows)}/{len(rows)}; median per-shape Spearman "
             f"{np.nanmedian([r['rho'] for r in rows]):.3f}.", "",
             "| M | N | K | measured (fastest first) | predicted | fastest agrees | ranking agrees |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        verdict = "yes" if r["agrees"] else "no: " + ", ".join(map("/".join, r["bad"]))
        lines.append(f"| {r['m']} | {r['n']} | {r['k']} | {r['measured']} | {r['predicted']} | "
                     f"{'yes' if r['fastest_agrees'] else 'no'} | {verdict} |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
