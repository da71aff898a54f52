"""`mpsearch plan`: search a per-site format plan under budgets and write it as JSON."""

from __future__ import annotations

import argparse
import sys

from .. import api
from ..activations import calibrate_choices, plan_params
from ..apply import quantized
from ..formats import DEFAULT_FORMATS
from ..objectives import measure
from ..report import comparison_rows, comparison_table, site_table, totals_line
from ..search.settings import key_value
from ._common import Inputs, add_data_args, add_model_args, info
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=False)
    add_data_args(p)
    p.add_argument("--budget", action="append", metavar="B",
                   help="4MB, 900KiB, 4.5bits, 30%%, latency=2ms, energy=5mJ, bops=2G; repeat to combine")
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS), help="candidate formats, comma-separated")
    p.add_argument("--estimator", help="sensitivity estimator (default: hessian; measured with --data zeroq)")
    p.add_argument("--estimator-option", action="append", default=[], metavar="K=V", type=key_value,
                   help="estimator setting, e.g. tol=0.1, max_probes=32, method=hutchinson; repeat for several")
    p.add_argument("--no-cache", action="store_true", help="recompute sensitivities, do not reuse the cache")
    p.add_argument("--search", default="local",
                   help="searcher: local (default: ILP, then measured local search), ilp, refine, optuna")
    p.add_argument("--max-evals", type=int, metavar="N", help="local search: measure at most N plans (default 100)")
    p.add_argument("--time-limit", type=float, metavar="S", help="search time limit in seconds")
    p.add_argument("--search-option", action="append", default=[], metavar="K=V", type=key_value,
                   help="searcher setting, e.g. aggregate=max, aggregate=lp:2, measurements=80, sampler=nsga2, "
                        "trials=200, solver=cbc, time_limit=10; repeat for several")
    p.add_argument("--max-drop", metavar="TOL",
                   help="cheapest plan (within --budget, default the 16-bit size) whose measured metric drops at "
                        "most TOL: 1%% of the FP value, or an absolute 0.01")
    p.add_argument("--drop-metric", help="metric --max-drop watches (default: accuracy with labels)")
    p.add_argument("--hardware", help="cost model for latency/energy budgets (see `mpsearch hardware list`)")
    p.add_argument("--objective", help="loss to protect (default: cross_entropy with labels, else kl)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-guard", action="store_true",
                   help="skip measuring the plan against uniform plans that fit the budget")
    p.add_argument("-o", "--output", default="plan.json", help="where to write the plan (default: plan.json)")


@command("plan", "search a mixed-precision plan under budgets", arguments)
def run(args: argparse.Namespace) -> int:
    if not args.budget and args.max_drop is None:  # argparse cannot say "required unless --max-drop"
        print("mpsearch plan: error: the following arguments are required: --budget (or --max-drop) (see --help)",
              file=sys.stderr)
        raise SystemExit(2)
    inp = Inputs(args)
    estimator = args.estimator or ("measured" if inp.zeroq else "hessian")  # ZeroQ: KL, one site at a time
    plan = api.plan(inp.model, inp.data, budget=args.budget, formats=args.formats, estimator=estimator,
                    search=args.search, seed=args.seed, hardware=args.hardware,
                    objective=args.objective or inp.objective, guard_uniform=not args.no_guard,
                    search_settings=dict(args.search_option), estimator_settings=dict(args.estimator_option),
                    max_drop=args.max_drop, drop_metric=args.drop_metric,
                    cache=not args.no_cache, max_evals=args.max_evals, time_limit=args.time_limit)
    plan.save(args.output)
    print(site_table(plan))
    print(totals_line(plan))
    if plan.measured:
        test = None
        if inp.test is not None:
            test = _measure_rows(inp, plan)
        print()
        print(comparison_table(plan, test))
        if "guard" in plan.measured:
            info(f"note: {plan.measured['guard']}")
    if args.max_drop is not None:
        steps = [r for r in plan.measured.get("search", []) if r.get("within")]
        if steps:
            best = min(steps, key=lambda r: r["cost"])
            info(f"--max-drop {best['tolerance']}: cheapest plan whose {best['metric']} drops {best['drop']:.4g} "
                 f"(FP {best['fp']:.4g}) on the calibration data; {len(plan.measured['search'])} budgets tried")
    info(f"wrote {args.output}")
    return 0



def _measure_rows(inp: Inputs, plan) -> dict[str, dict]:
    """The same comparison rows measured on the example's held-out test split."""
    metrics = ["cross_entropy", "accuracy"]
    if not inp.test.labelled:  # label-free example (minilm-l6): distance to the FP outputs
        metrics = [plan.provenance.get("objective", "kl"), "sqnr"]
        inp.test = inp.test.with_reference(inp.model)
    sites = list(plan.assignments)
    out = {"fp (16-bit)": measure(inp.model, inp.test, metrics)}
    with quantized(inp.model, plan.assignments, plan_params(plan.sites)):
        out["plan"] = measure(inp.model, inp.test, metrics)
    acts = calibrate_choices(inp.model, inp.data, sites, plan.measured.get("uniform", {}))
    for label, _ in comparison_rows(plan):
        if label.startswith("uniform"):
            fmt = label.split()[1]
            with quantized(inp.model, {s: fmt for s in sites}, acts):
                out[f"uniform {fmt}"] = measure(inp.model, inp.test, metrics)
    return out
