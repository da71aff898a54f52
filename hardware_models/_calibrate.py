"""Fit a spec's efficiency factors to measured latencies and write the calibrated spec.

The CSV has one row per measured GEMM (what `benchmarks/measure_kernels.py` writes, or per-layer
timings of a real model): `m, n, k, choice, latency_s`, optionally `in_elems, out_elems` (conv).
The fit minimizes Σ log(pred/measured)² — relative error, so a 5 µs kernel counts as much as a
5 ms one — over the compute efficiency, memory efficiency and launch time of every route key seen
(kernel families differ: a dequantizing GEMV reaches another fraction of HBM than cuBLAS) and the
roofline sharpness. A weak prior holds a factor the data cannot see (e.g. the
compute efficiency of a path measured only when memory-bound) at its spec value.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mpsearch.errors import MpsearchError, UsageError
from mpsearch.formats import get_choice
from mpsearch.io import atomic_write_text

from ._analytical import AnalyticalCostModel, get
from ._roofline import Components, Efficiencies, Gemm, components, latency
from ._spec import Number, Spec, dumps_toml, parse_spec, replace_numbers

REQUIRED = ("m", "n", "k", "choice", "latency_s")
_PRIOR = 0.02  # weight of the pull towards the spec's values, per log-parameter
_BOUNDS = {"eff": (0.01, 1.0), "mem": (0.05, 1.0), "sharp": (1.0, 64.0)}


def read_measurements(source: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Load and check a measurement CSV (or frame): the columns of `REQUIRED`, positive latencies."""
    if isinstance(source, pd.DataFrame):
        df = source.copy()
    else:
        p = Path(source)
        if not p.is_file():
            raise UsageError(
                f"measurement file {str(p)!r} does not exist; make one with "
                "`python benchmarks/measure_kernels.py --out DIR`"
            )
        try:
            df = pd.read_csv(p)
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
            raise UsageError(
                f"cannot read {str(p)!r} as CSV ({e.__class__.__name__}); it needs columns "
                f"{', '.join(REQUIRED)}"
            ) from e
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise UsageError(
            f"the measurements lack column(s) {missing}; need {', '.join(REQUIRED)} "
            "(and optionally in_elems, out_elems)"
        )
    if df.empty:
        raise UsageError("the measurement file has no rows")
    if not (pd.to_numeric(df.latency_s, errors="coerce") > 0).all():
        raise UsageError("every latency_s must be a positive number of seconds")
    return df.reset_index(drop=True)


def _gemm(row) -> Gemm:
    def opt(col):
        v = getattr(row, col, None)
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)

    op = getattr(row, "op", "")
    kind = op if op in ("linear", "conv", "embedding") else ""
    return Gemm(int(row.m), int(row.n), int(row.k), opt("in_elems"), opt("out_elems"), kind=kind)


def row_components(spec: Spec, df: pd.DataFrame) -> tuple[list[Components], list[int], list[str]]:
    """Components of each row the target can model; indices kept; notes on rows skipped."""
    comps, kept, notes = [], [], []
    for i, row in enumerate(df.itertuples(index=False)):
        try:
            comps.append(components(spec, _gemm(row), get_choice(str(row.choice))))
            kept.append(i)
        except MpsearchError as e:
            notes.append(f"row {i} ({row.choice}): skipped, {e}")
    return comps, kept, notes


def error_summary(predicted, measured) -> dict[str, float]:
    """Spearman rank correlation and median absolute percentage error of predictions."""
    from scipy.stats import spearmanr

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    ape = np.abs(p - m) / m
    rho = float(spearmanr(p, m).statistic) if len(p) > 1 else float("nan")
    return {"n": int(len(p)), "spearman": rho, "mdape": float(np.median(ape)) if len(p) else float("nan")}


@dataclass
class Calibration:
    """What a fit produced: the calibrated spec, the fitted factors, and errors before/after."""

    spec: Spec
    efficiencies: Efficiencies
    before: dict[str, float]
    after: dict[str, float]
    notes: list[str] = field(default_factory=list)
    keys: tuple[str, ...] = ()  # the route keys the measurements covered

    def save(self, path: str | Path) -> Path:
        atomic_write_text(path, dumps_toml(self.spec.raw))
        return Path(path)


def fitted_lines(cal: Calibration) -> list[str]:
    """One line per route key fitted, for reports."""
    e = cal.efficiencies
    return [
        f"{k}: compute efficiency {e.compute[k]:.3g}, memory efficiency {e.memory[k]:.3g}, "
        f"launch {e.launch[k] * 1e6:.3g} us"
        for k in cal.keys
    ] + [f"roofline sharpness {e.sharpness:.3g}"]


def _fit(spec: Spec, comps: list[Components], measured: np.ndarray) -> Efficiencies:
    """Least squares on log latency over (compute, memory, launch) per route key seen, and sharpness."""
    from scipy.optimize import least_squares

    start = Efficiencies.of(spec)
    keys = sorted({c.key for c in comps})
    nk = len(keys)
    x0, lo, hi = [], [], []
    for table, (a, b) in ((start.compute, _BOUNDS["eff"]), (start.memory, _BOUNDS["mem"])):
        x0 += [math.log(min(max(table[k], a * 1.01), b)) for k in keys]
        lo += [math.log(a)] * nk
        hi += [math.log(b)] * nk
    for k in keys:
        t = max(start.launch[k], 1e-9)
        x0.append(math.log(t))
        lo.append(math.log(t / 1e3))
        hi.append(math.log(t * 1e3))
    lo.append(math.log(_BOUNDS["sharp"][0]))
    hi.append(math.log(_BOUNDS["sharp"][1]))
    lo, hi = np.array(lo), np.array(hi)

    def unpack(x) -> Efficiencies:
        comp, mem, launch = dict(start.compute), dict(start.memory), dict(start.launch)
        for i, k in enumerate(keys):
            comp[k], mem[k], launch[k] = math.exp(x[i]), math.exp(x[nk + i]), math.exp(x[2 * nk + i])
        return Efficiencies(comp, mem, launch, math.exp(x[3 * nk]))

    log_meas = np.log(measured)

    def residuals(x, prior):
        e = unpack(x)
        pred = np.array([latency(spec, c, e) for c in comps])
        return np.concatenate([np.log(pred) - log_meas, _PRIOR * (x - prior)])

    best = None
    for p0 in (spec.sharpness.value if spec.sharpness else 8.0, 2.0):
        start_x = np.clip(np.array(x0 + [math.log(p0)]), lo + 1e-9, hi - 1e-9)
        r = least_squares(residuals, start_x, bounds=(lo, hi), args=(start_x,), method="trf")
        if best is None or r.cost < best.cost:
            best = r
    return unpack(best.x)


def calibrate(
    hardware, measurements: str | Path | pd.DataFrame, out: str | Path | None = None
) -> Calibration:
    """Fit `hardware`'s (a name, spec file or cost model) efficiency factors to measured latencies.

    Returns the calibrated spec with the errors before and after; writes it (atomically) to `out`.
    """

    hw = get(hardware) if not isinstance(hardware, Spec) else AnalyticalCostModel(spec=hardware)
    if not isinstance(hw, AnalyticalCostModel):
        raise UsageError(
            f"{hardware!r} is not an analytical cost model with a spec; calibrate a bundled target "
            "(see `mpsearch hardware list`) or a spec .toml"
        )
    spec = hw.spec
    df = read_measurements(measurements)
    comps, kept, notes = row_components(spec, df)
    if len(comps) < 3:
        raise UsageError(
            f"only {len(comps)} measured rows can be modelled on {spec.name}; calibration needs at "
            "least 3 (check the choice names and the target)"
        )
    measured = df.latency_s.to_numpy(float)[kept]
    e0 = Efficiencies.of(spec)
    before = error_summary([latency(spec, c, e0) for c in comps], measured)
    fit = _fit(spec, comps, measured)
    after = error_summary([latency(spec, c, fit) for c in comps], measured)

    what = (
        Path(str(measurements)).name if not isinstance(measurements, pd.DataFrame) else "a measurement table"
    )
    stamp = _dt.date.today().isoformat()

    def src(old: Number | None) -> str:
        was = f"; uncalibrated {old.value:.4g} ({old.source[:100]})" if old else ""
        return (
            f"calibrated {stamp}: least-squares fit of log latency to {len(comps)} measured kernels "
            f"in {what} "
            f"(MdAPE {before['mdape']:.1%} -> {after['mdape']:.1%}){was}"
        )

    seen = {c.key for c in comps}
    updates: dict[str, Number] = {}
    for p in spec.paths.values():
        for key, pre, eff in (
            (p.name, "", p.efficiency),
            (p.name + "+dequant", "dequant_", p.dequant_efficiency),
        ):
            if key not in seen:
                continue
            mem_old = p.overrides.get(pre + "memory_efficiency", spec.memory_efficiency)
            launch_old = p.overrides.get(pre + "launch", spec.launch)
            updates[f"paths.{p.name}.{pre}efficiency"] = Number(
                round(fit.compute[key], 4), src(eff), eff.unit
            )
            updates[f"paths.{p.name}.{pre}memory_efficiency"] = Number(
                round(fit.memory[key], 4), src(mem_old), ""
            )
            updates[f"paths.{p.name}.{pre}launch"] = Number(
                float(f"{fit.launch[key]:.4g}"), src(launch_old), "s"
            )
    updates["overhead.sharpness"] = Number(round(fit.sharpness, 3), src(spec.sharpness), "")
    raw = replace_numbers(spec, updates)
    if not raw.get("name", "").endswith("-calibrated"):
        raw["name"] = f"{spec.name}-calibrated"
    raw["calibrated_from"] = f"{what} ({len(comps)} rows, {stamp})"
    new = replace(parse_spec(raw, str(out or "")), origin=str(out or ""))
    cal = Calibration(new, fit, before, after, notes, tuple(sorted(seen)))
    if out is not None:
        cal.save(out)
    return cal
