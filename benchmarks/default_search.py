"""Today's default (Hessian ILP) against the new default (measured local search) on real models too
large to enumerate: held-out quality at equal budget, and the extra time.

    python benchmarks/default_search.py [--examples minilm-l6,tiny-decoder] [--budgets 3.5bits,4.5bits]
                                        [--max-evals N] [--out results/default_search]

Both are the public `mpsearch.plan(...)` end to end (sensitivity estimated afresh, uniform guard on),
run side by side in one process, one untimed plan first. The held-out split is measured only after
planning (the planner sees the calibration split alone): MiniLM-L6 on held-out sentences (`mse` to
the FP embeddings), the tiny decoder on text from modules it never saw (next-token cross-entropy).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pandas as pd
import torch
from _markdown import markdown  # noqa: I001  (benchmarks/ is on the path when run as a script)

import mpsearch
from mpsearch.data import as_data
from mpsearch.examples import load_example
from mpsearch.objectives import measure

# "the default (auto)" is `mpsearch.plan()` with no `search`: `local`, except `ilp` for a Hugging Face
# language model (PlanConfig.search); the `local` row is the measured search forced on every model.
MODES = [("today's default (ilp)", "ilp", {}), ("new default (local)", "local", {}), ("the default (auto)", "auto", {})]


def per_sample(qmodel, data, metric: str) -> torch.Tensor:
    """The held-out `metric` of each sample (sentence, token window) of a planned model, for paired errors."""
    return torch.tensor([measure(qmodel, data._rows(torch.tensor([i])), [metric])[metric]
                         for i in range(data.num_samples)], dtype=torch.float64)


def paired_se(new: torch.Tensor, old: torch.Tensor) -> tuple[float, float]:
    """(mean of new − old, its standard error) over the same held-out samples."""
    d = new - old
    return float(d.mean()), float(d.std()) / math.sqrt(len(d))


def run_example(name: str, budgets: list[str], max_evals: int | None) -> pd.DataFrame:
    """Both defaults at every budget on one example, timed side by side after one untimed plan."""
    ex = load_example(name)
    model, cal, test = ex.model, as_data(ex.calibration), as_data(ex.test)
    objective = getattr(ex, "objective", None)
    metrics = [objective] if objective else ["cross_entropy", "accuracy"]
    if objective:
        test = test.with_reference(model)
    mpsearch.plan(model, cal, budget=budgets[-1], search="ilp", objective=objective, cache=False)  # warm-up
    rows = []
    for b in budgets:
        plans, applied = [], []
        for mode, search, settings in MODES:
            t0 = time.perf_counter()
            p = mpsearch.plan(model, cal, budget=b, objective=objective, cache=False,
                              **({} if search == "auto" else {"search": search}),
                              max_evals=max_evals if search == "local" else None, search_settings=settings)
            secs = time.perf_counter() - t0
            # the plan as `apply` realizes it: with its rounding (GPTQ needs the calibration data)
            q = mpsearch.apply(model, p, data=cal)
            held = measure(q, test, metrics)
            applied.append(q)
            s = p.measured.get("search_summary", {})
            plans.append(p)
            rows.append({"example": name, "budget": b, "mode": mode, "avg_bits": p.totals["avg_bits"],
                         **{f"cal_{k}": v for k, v in p.measured["plan"].items()},
                         **{f"test_{k}": v for k, v in held.items()}, "test_metric": metrics[0],
                         "plans_measured": s.get("evaluations", 0), "stopped": s.get("stopped", ""),
                         "seconds": secs, "assignments": json.dumps(p.assignments)})
            print({k: v for k, v in rows[-1].items() if k != "assignments"}, flush=True)
        today = per_sample(applied[0], test, metrics[0])
        for i, q in enumerate(applied[1:], start=len(rows) - len(plans) + 1):
            diff, se = paired_se(per_sample(q, test, metrics[0]), today)
            rows[i] |= {"test_diff_vs_today": diff, "test_diff_se": se}
            print(f"[{name}] {b} {rows[i]['mode']}: held-out minus today's = {diff:.4g} ± {se:.2g} "
                  f"(paired SE over {test.num_samples})")
    return pd.DataFrame(rows)


def side_by_side(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (example, budget): both plans' size and held-out metric, the time and its ratio."""
    rows = []
    for (name, b), g in frame.groupby(["example", "budget"], sort=False):
        old = g[g["mode"] == MODES[0][0]].iloc[0]
        for _, new in g[g["mode"] != MODES[0][0]].iterrows():
            rows.append(_compare(name, b, old, new))
    return pd.DataFrame(rows)


def _compare(name: str, b: str, old: pd.Series, new: pd.Series) -> dict:
    """One mode against today's default at one budget."""
    key = f"test_{old.test_metric}"
    return {"example": name, "budget": b, "mode": new["mode"], "held-out metric": old.test_metric,
                "today bits": old.avg_bits, "new bits": new.avg_bits, "today held-out": old[key],
                "new held-out": new[key], "new/today": new[key] / old[key],
                "new − today (paired SE)": f"{new.test_diff_vs_today:.3g} ± {new.test_diff_se:.2g}",
                "today s": old.seconds, "new s": new.seconds, "extra s": new.seconds - old.seconds,
                "time ratio": new.seconds / old.seconds, "new plans measured": new.plans_measured}


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", default="minilm-l6,tiny-decoder", help="comma-separated bundled examples")
    ap.add_argument("--budgets", default="3.5bits,4.5bits")
    ap.add_argument("--max-evals", type=int, default=None, help="the new default's evaluation budget (default its own)")
    ap.add_argument("--confirm", type=float, default=None,
                    help="also run the new default with confirm=FRACTION (held-back calibration samples)")
    ap.add_argument("--modes", default="ilp,local,auto", help="searches to run (ilp, today's, always first)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("results/default_search"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    budgets = args.budgets.split(",")
    keep = {"ilp", *args.modes.split(",")}
    MODES[:] = [m for m in MODES if m[1] in keep]
    if args.confirm:
        MODES.append((f"new default, confirm={args.confirm:g}", "local", {"confirm": args.confirm}))
    frame = pd.concat([run_example(e.strip(), budgets, args.max_evals) for e in args.examples.split(",")],
                      ignore_index=True)
    side = side_by_side(frame)
    print(side.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out.with_suffix(".csv"), index=False)
    args.out.with_suffix(".md").write_text(markdown(side, 4))
    return frame


if __name__ == "__main__":
    main()
