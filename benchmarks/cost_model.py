"""Predicted vs measured GEMM latency: the analytical cost model against `measure_kernels.py`'s CSV.

Reports Spearman rank correlation and median absolute percentage error (MdAPE) for the uncalibrated
spec over every case, then calibrates on one half of the cases (stratified by format, seeded) and
scores the other half, uncalibrated and calibrated side by side. Targets (issue 6, on H100):
Spearman >= 0.9; MdAPE <= 25% uncalibrated and <= 10% calibrated on the held-out half.

    python benchmarks/measure_kernels.py --out out/kernels-h100            # on the H100
    python benchmarks/cost_model.py --csv out/kernels-h100/kernels.csv --hardware h100 --out out/cost-h100
    python benchmarks/cost_model.py --dry-run --out /tmp/cost              # CPU plumbing check
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from mpsearch.errors import MpsearchError
from mpsearch.hardware_models import calibrate, get, read_measurements
from mpsearch.hardware_models._calibrate import error_summary, fitted_lines, row_components
from mpsearch.hardware_models._roofline import Efficiencies, latency

TARGETS = {"spearman": 0.9, "mdape_uncal": 0.25, "mdape_cal": 0.10}


def split_halves(df: pd.DataFrame, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a calibration half and a held-out half, each holding half of every format."""
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for _, idx in df.groupby("choice", sort=True).groups.items():
        idx = rng.permutation(np.asarray(idx))
        fit.extend(idx[: len(idx) // 2])
        held.extend(idx[len(idx) // 2 :])
    return np.sort(fit), np.sort(held)


def predict(
    spec, df: pd.DataFrame, eff: Efficiencies | None = None
) -> tuple[np.ndarray, list[int], list[str]]:
    comps, kept, notes = row_components(spec, df)
    eff = eff or Efficiencies.of(spec)
    return np.array([latency(spec, c, eff) for c in comps]), kept, notes


def run(csv: str | Path, hardware: str, out: Path, seed: int = 0) -> dict:
    df = read_measurements(csv)
    hw = get(hardware)
    pred, kept, notes = predict(hw.spec, df)
    df = df.iloc[kept].reset_index(drop=True).assign(predicted_s=pred)
    if len(df) < 4:
        raise MpsearchError(f"only {len(df)} rows of {csv} can be modelled on {hardware}; nothing to report")
    fit_idx, held_idx = split_halves(df, seed)
    cal = calibrate(hw.spec, df.iloc[fit_idx], out=out / f"{hw.spec.name}-calibrated.toml")
    df["calibrated_s"] = predict(cal.spec, df)[0]
    df["half"] = "held-out"
    df.loc[fit_idx, "half"] = "calibration"
    held = df.iloc[held_idx]
    summary = {
        "uncalibrated, all cases": error_summary(df.predicted_s, df.latency_s),
        "uncalibrated, held-out half": error_summary(held.predicted_s, held.latency_s),
        "calibrated, held-out half": error_summary(held.calibrated_s, held.latency_s),
        "calibrated, calibration half (fit)": error_summary(
            df.iloc[fit_idx].calibrated_s, df.iloc[fit_idx].latency_s
        ),
    }
    per_format = {c: error_summary(g.predicted_s, g.latency_s) for c, g in df.groupby("choice")}
    df.to_csv(out / "predictions.csv", index=False)
    report = _markdown(df, summary, per_format, hardware, cal, notes)
    (out / "report.md").write_text(report)
    print(report)
    return summary


def _pct(x: float) -> str:
    return "-" if np.isnan(x) else f"{x:.1%}"


def _markdown(df, summary, per_format, hardware, cal, notes) -> str:
    device = df.device.iloc[0] if "device" in df else "?"
    lines = [
        f"## Cost model vs measurement: {hardware} spec, kernels measured on {device}",
        "",
        "| cases | n | Spearman | MdAPE | target |",
        "|---|---|---|---|---|",
    ]
    rho = f"Spearman >= {TARGETS['spearman']}"
    target = {
        "uncalibrated, all cases": f"{rho}, MdAPE <= {TARGETS['mdape_uncal']:.0%}",
        "calibrated, held-out half": f"{rho}, MdAPE <= {TARGETS['mdape_cal']:.0%}",
    }
    for k, s in summary.items():
        lines.append(f"| {k} | {s['n']} | {s['spearman']:.3f} | {_pct(s['mdape'])} | {target.get(k, '')} |")
    lines += [
        "",
        "Uncalibrated MdAPE per format: "
        + ", ".join(f"{c} {_pct(s['mdape'])} (n={s['n']})" for c, s in per_format.items()),
        "",
    ]
    lines += ["Fitted on the calibration half:"] + [f"- {line}" for line in fitted_lines(cal)]
    lines += [
        "",
        "| choice | M | N | K | measured (us) | predicted (us) | calibrated (us) | half |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in df.sort_values(["choice", "n", "k", "m"]).itertuples():
        lines.append(
            f"| {r.choice} | {r.m} | {r.n} | {r.k} | {r.latency_s * 1e6:.2f} | {r.predicted_s * 1e6:.2f} | "
            f"{r.calibrated_s * 1e6:.2f} | {r.half} |"
        )
    if notes:
        lines += ["", "Rows not modelled:"] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--csv", help="kernels.csv from benchmarks/measure_kernels.py")
    p.add_argument("--hardware", default="h100", help="target spec to score (default h100)")
    p.add_argument(
        "--out", default="out/cost-model", help="folder for report.md, predictions.csv, calibrated spec"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration / held-out split")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="without --csv: measure tiny kernels on this CPU first (plumbing only; numbers meaningless)",
    )
    p.add_argument("--device", default="cpu", help="device for the --dry-run measurement")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    csv = args.csv
    if csv is None:
        if not args.dry_run:
            p.error("give --csv FILE (from benchmarks/measure_kernels.py) or --dry-run")
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import measure_kernels

        tmp = Path(tempfile.mkdtemp(prefix="kernels-"))
        measure_kernels.main(["--device", args.device, "--dry-run", "--out", str(tmp)])
        csv = tmp / "kernels.csv"
    try:
        run(csv, args.hardware, out, args.seed)
    except MpsearchError as e:
        print(f"cost_model: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
