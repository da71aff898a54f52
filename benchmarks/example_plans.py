"""Mixed-precision plans vs uniform precision on the bundled digits CNN (held-out test split).

    python benchmarks/example_plans.py [--budgets 3,4,5] [--estimator hessian] [--seed 0]

One sensitivity table serves every budget. For each budget B (average bits per weight, scales
included) it prints the plan's test accuracy/loss beside uniform INT-B (which, with its FP16 scales,
costs slightly MORE than B bits) and the size of each.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

import mpsearch
from mpsearch.apply import quantized
from mpsearch.data import as_data
from mpsearch.examples import load_example
from mpsearch.objectives import measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="3,4,5")
    ap.add_argument("--estimator", default="hessian")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ex = load_example("digits-cnn")
    m, test = ex.model, as_data(ex.test)
    metrics = ["accuracy", "cross_entropy"]
    t0 = time.perf_counter()
    sens = mpsearch.sensitivity(m, ex.calibration, estimator=args.estimator, seed=args.seed)
    t_sens = time.perf_counter() - t0
    fp = measure(m, test, metrics)
    rows = [{"budget": "-", "model": "fp32", "avg bits": 32.0, "test acc": fp["accuracy"],
             "test CE": fp["cross_entropy"]}]
    for b in [int(v) for v in args.budgets.split(",")]:
        t0 = time.perf_counter()
        plan = mpsearch.plan(m, ex.calibration, budget=f"{b}bits", sensitivity=sens, seed=args.seed)
        t_plan = time.perf_counter() - t0
        with quantized(m, plan.assignments):
            r = measure(m, test, metrics)
        uni = plan.measured["uniform"][f"int{b}"]
        with quantized(m, {s: f"int{b}" for s in plan.assignments}):
            u = measure(m, test, metrics)
        rows.append({"budget": f"{b}bits", "model": "mpsearch plan", "avg bits": plan.totals["avg_bits"],
                     "test acc": r["accuracy"], "test CE": r["cross_entropy"],
                     "formats": " ".join(plan.assignments.values()), "seconds": round(t_plan, 2)})
        rows.append({"budget": f"{b}bits", "model": f"uniform int{b}", "avg bits": uni["avg_bits"],
                     "test acc": u["accuracy"], "test CE": u["cross_entropy"]})
    print(f"sensitivity ({args.estimator}): {t_sens:.1f} s, shared by all budgets")
    print(pd.DataFrame(rows).to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
