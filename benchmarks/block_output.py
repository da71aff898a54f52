"""kfac's default per-weight score against its block-output score (`block_output=True`) on the tiny real
decoder: held-out quality of the default plan at equal budget, and the planning time.

    OMP_NUM_THREADS=1 python benchmarks/block_output.py [--budgets 3.5bits 4.25bits]

`block_output=True` scores a fused group (q/k/v, gate/up, one MoE layer's experts) by the damage at the
output of the module that holds it, each candidate's rounded weights replayed through that module, instead
of summing each member's own output damage (see `mpsearch.sensitivity.streaming`). Both rows are the public
`mpsearch.plan(model, calibration, budget)` with only that setting changed (CLI: `--estimator-option
block_output=true`), realized by `mpsearch.apply` with the plan's rounding, and scored on all of the
example's held-out text: perplexity, mean and 99.9th-percentile token KL to FP, and the paired per-window
cross-entropy difference (block − default) with its standard error.
"""

from __future__ import annotations

import argparse
import math
import time

import pandas as pd
import torch
from _markdown import markdown  # noqa: I001  (benchmarks/ is on the path when run as a script)

import mpsearch
from mpsearch.data import as_data
from mpsearch.examples import load_example


@torch.no_grad()
def window_scores(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, ref: torch.Tensor | None,
                  batch: int = 64) -> dict:
    """Per-window cross-entropy and per-token KL to `ref` (FP log-probabilities; None: they are these)."""
    lps = torch.cat([model(input_ids=x[i:i + batch]).logits.float().log_softmax(-1) for i in range(0, len(x), batch)])
    ce = -lps.gather(-1, y[..., None])[..., 0]
    out = {"ce": ce.mean(1).double(), "logp": lps}
    if ref is not None:
        kl = (ref.exp() * (ref - lps)).sum(-1).flatten()
        out |= {"kl": float(kl.mean()), "kl_p999": float(kl.quantile(0.999))}
    return out


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", nargs="+", default=["3.5bits", "4.25bits"])
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    ex = load_example("tiny-decoder")
    model, cal = ex.model.eval(), as_data(ex.calibration)
    x, y = ex.test["x"]["input_ids"], ex.test["y"]
    fp = window_scores(model, x, y, None)
    print(f"tiny decoder: FP perplexity {math.exp(fp['ce'].mean()):.4f} on {x.shape[0]}×{x.shape[1]} held-out tokens")
    rows = []
    for budget in args.budgets:
        base = None
        for name, block in [("default (per weight)", False), ("block_output=True", True)]:
            t0 = time.process_time()
            plan = mpsearch.plan(model, cal, budget=budget, cache=False, estimator_settings={"block_output": block})
            secs = time.process_time() - t0
            s = window_scores(mpsearch.apply(model, plan, data=cal), x, y, fp["logp"])
            row = {"budget": budget, "estimator": name, "avg bits": round(plan.totals["avg_bits"], 3),
                   "perplexity": round(math.exp(s["ce"].mean()), 4), "mean KL": round(s["kl"], 4),
                   "p99.9 KL": round(s["kl_p999"], 4), "CPU s (plan)": round(secs, 1)}
            if base is None:
                base, row["dCE vs default (nats)"] = s["ce"], "0"
            else:
                d = s["ce"] - base
                row["dCE vs default (nats)"] = f"{float(d.mean()):+.4f} ± {float(d.std()) / math.sqrt(len(d)):.4f}"
            rows.append(row)
            print(row, flush=True)
    frame = pd.DataFrame(rows)
    print(markdown(frame))
    return frame


if __name__ == "__main__":
    main()
