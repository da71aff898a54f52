"""Today's default (Hessian ILP) against the new default (measured local search) on a real model too
large to enumerate: held-out quality at equal budget, and the extra time.

    python benchmarks/default_search.py [--example minilm-l6] [--budgets 3.5bits,4.5bits] [--max-evals 100]

Both are the public `mpsearch.plan(...)` end to end (sensitivity estimated afresh, uniform guard on),
run side by side in one process, one untimed plan first. The held-out split is measured only after
planning (the planner sees the calibration split alone).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from _markdown import markdown  # noqa: I001  (benchmarks/ is on the path when run as a script)

import mpsearch
from mpsearch.activations import plan_params
from mpsearch.apply import quantized
from mpsearch.data import as_data
from mpsearch.examples import load_example
from mpsearch.objectives import measure


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--example", default="minilm-l6")
    ap.add_argument("--budgets", default="3.5bits,4.5bits")
    ap.add_argument("--max-evals", type=int, default=None, help="the new default's evaluation budget (default its own)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("results/default_search"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ex = load_example(args.example)
    model, cal, test = ex.model, as_data(ex.calibration), as_data(ex.test)
    objective = getattr(ex, "objective", None)
    metrics = [objective] if objective else ["cross_entropy", "accuracy"]
    if objective:
        test = test.with_reference(model)
    budgets = args.budgets.split(",")
    mpsearch.plan(model, cal, budget=budgets[-1], search="ilp", objective=objective, cache=False)  # warm-up
    rows = []
    for b in budgets:
        for mode, search in (("today's default (ilp)", "ilp"), ("new default (local)", "local")):
            t0 = time.perf_counter()
            p = mpsearch.plan(model, cal, budget=b, search=search, objective=objective, cache=False,
                              max_evals=args.max_evals if search == "local" else None)
            secs = time.perf_counter() - t0
            with quantized(model, p.assignments, plan_params(p.sites)):
                held = measure(model, test, metrics)
            s = p.measured.get("search_summary", {})
            rows.append({"budget": b, "mode": mode, "avg_bits": p.totals["avg_bits"],
                         **{f"cal_{k}": v for k, v in p.measured["plan"].items()},
                         **{f"test_{k}": v for k, v in held.items()},
                         "plans_measured": s.get("evaluations", 0), "stopped": s.get("stopped", ""),
                         "seconds": secs})
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    key = f"test_{metrics[0]}"
    old, new = frame.iloc[0::2].reset_index(drop=True), frame.iloc[1::2].reset_index(drop=True)
    side = pd.DataFrame({"budget": old.budget, "today bits": old.avg_bits, "new bits": new.avg_bits,
                         f"today {key}": old[key], f"new {key}": new[key], f"new/today {key}": new[key] / old[key],
                         "today s": old.seconds, "new s": new.seconds, "extra s": new.seconds - old.seconds,
                         "time ratio": new.seconds / old.seconds, "new plans measured": new.plans_measured})
    print(side.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out.with_suffix(".csv"), index=False)
    args.out.with_suffix(".md").write_text(markdown(side, 4))
    return frame


if __name__ == "__main__":
    main()
