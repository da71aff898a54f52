"""`mpsearch autotune`: try the pipeline's own knobs and keep the plan that measures best on held-out data."""

from __future__ import annotations

import argparse

from ..api import autotune
from ..formats import DEFAULT_FORMATS
from ..io import atomic_write_text
from ..planner import knob_names
from ..search.settings import key_value
from ._common import Inputs, add_data_args, add_model_args, add_scope_args, info, scope_kwargs
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=False)
    add_data_args(p)
    p.add_argument("--budget", action="append", required=True, metavar="B",
                   help="4MB, 4.5bits, 30%%, latency=2ms (with --hardware), ...; repeat to combine")
    p.add_argument("--knobs", help=f"comma-separated, of {', '.join(knob_names())} (default: all)")
    p.add_argument("--trials", type=int, default=24,
                   help="configurations to try: a space this small or smaller is enumerated, else seeded TPE")
    p.add_argument("--held-out", type=float, default=0.25, metavar="FRACTION",
                   help="the last FRACTION of --data is held out to choose on (default 0.25)")
    p.add_argument("--formats", help="candidate formats, comma-separated (default: the --hardware target's "
                   f"default_formats, else {','.join(DEFAULT_FORMATS)})")
    p.add_argument("--hardware", help="cost model for latency/energy budgets (see `mpsearch hardware list`)")
    p.add_argument("--metric", help="held-out metric to choose on (default: cross_entropy with labels, else kl)")
    p.add_argument("--estimator-option", action="append", default=[], metavar="K=V", type=key_value,
                   help="setting for every estimator that takes it, e.g. max_probes=32; repeat for several")
    p.add_argument("--seed", type=int, default=0)
    add_scope_args(p)
    p.add_argument("--trials-csv", metavar="FILE", help="also write every configuration tried as CSV")
    p.add_argument("-o", "--output", default="plan.json", help="where to write the best plan (default: plan.json)")


@command("autotune", "try estimators, format variants, calibration and aggregates; keep the best held-out plan",
         arguments)
def run(args: argparse.Namespace) -> int:
    inp = Inputs(args)
    knobs = [k.strip() for k in args.knobs.split(",") if k.strip()] if args.knobs else None
    r = autotune(inp.model, inp.data, args.budget, held_out_fraction=args.held_out, knobs=knobs,
                 trials=args.trials, formats=args.formats, hardware=args.hardware, metric=args.metric,
                 estimator_settings=dict(args.estimator_option), seed=args.seed, **scope_kwargs(args))
    shown = r.trials.drop(columns=["plan"], errors="ignore")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
    print()
    how = "every configuration" if r.settings.get("exhaustive") else f"{len(r.trials)} TPE trials"
    best = ", ".join(f"{k}={v!r}" for k, v in r.best.items())
    print(f"best of {how} on held-out {r.metric}: {best}")
    r.plan.save(args.output)
    if args.trials_csv:
        atomic_write_text(args.trials_csv, shown.to_csv(index=False))
        info(f"wrote {args.trials_csv}")
    info(f"wrote {args.output}")
    return 0
