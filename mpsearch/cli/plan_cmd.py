"""`mpsearch plan`: search a per-site format plan under budgets and write it as JSON."""

from __future__ import annotations

import argparse
import sys

from ..formats import DEFAULT_FORMATS, LINEAR_DEFAULT_FORMATS
from ..planner import PlanConfig, Planner
from ..report import comparison_table, site_table, totals_line
from ..search.local import with_budget
from ..search.settings import key_value
from ._common import (
    Inputs,
    add_data_args,
    add_device_args,
    add_model_args,
    add_rounding_arg,
    add_scope_args,
    device_settings,
    info,
    run_on_ranks,
    scope_kwargs,
)
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=False)
    add_data_args(p)
    p.add_argument("--budget", action="append", metavar="B",
                   help="4MB, 900KiB, 4.5bits, 30%%, latency=2ms, energy=5mJ, bops=2G; repeat to combine")
    p.add_argument("--formats", help="candidate formats, comma-separated (default: the --hardware target's "
                   f"default_formats, else {','.join(DEFAULT_FORMATS)}; for a model of Linear layers "
                   f"{','.join(LINEAR_DEFAULT_FORMATS)})")
    p.add_argument("--estimator", help="sensitivity estimator (default: hessian; kfac for a checkpoint "
                   "directory; measured with --data zeroq)")
    p.add_argument("--estimator-option", action="append", default=[], metavar="K=V", type=key_value,
                   help="estimator setting, e.g. tol=0.1, max_probes=32, method=hutchinson; repeat for several")
    p.add_argument("--no-cache", action="store_true", help="recompute sensitivities, do not reuse the cache")
    add_device_args(p)
    p.add_argument("--search", default="auto",
                   help="searcher: auto (default: local, but ilp for a Hugging Face language model), local (ILP, then "
                        "measured local search), ilp, refine, optuna")
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
    p.add_argument("--target", help="deployment runtime: vllm, tensorrt-llm, llama.cpp, onnxruntime (or a profile "
                   ".toml); only formats it runs, fused sites tied")  # deploy
    p.add_argument("--objective", help="loss to protect (default: cross_entropy with labels, else kl)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-guard", action="store_true",
                   help="skip measuring the plan against uniform plans that fit the budget")
    p.add_argument("--keep-16bit", action="store_true",  # llm
                   help="keep a language model's embeddings and LM head at 16 bits")
    add_scope_args(p)
    add_rounding_arg(p, "when scoring and applying the plan")
    p.add_argument("-o", "--output", default="plan.json", help="where to write the plan (default: plan.json)")


@command("plan", "search a mixed-precision plan under budgets", arguments)
def run(args: argparse.Namespace) -> int:
    if not args.budget and args.max_drop is None:  # argparse cannot say "required unless --max-drop"
        print("mpsearch plan: error: the following arguments are required: --budget (or --max-drop) (see --help)",
              file=sys.stderr)
        raise SystemExit(2)
    return run_on_ranks(args, _run)


def _run(args: argparse.Namespace, inp: Inputs) -> int:
    cfg = PlanConfig(formats=args.formats, estimator=args.estimator,
                     estimator_settings=device_settings(args, dict(args.estimator_option)),
                     search=args.search, hardware=args.hardware,
                     search_settings=with_budget(args.search_option, args.max_evals, args.time_limit),
                     objective=args.objective or inp.objective, seed=args.seed, guard_uniform=not args.no_guard,
                     cache=not args.no_cache, keep_16bit=args.keep_16bit, **scope_kwargs(args),
                     rounding=args.rounding, target=args.target)
    planner = Planner(inp.model, inp.data, cfg)
    plan = planner.plan(args.budget, max_drop=args.max_drop, drop_metric=args.drop_metric)
    plan.save(args.output)
    print(site_table(plan))
    print(totals_line(plan))
    if "fp" in plan.measured:  # the guard measured the comparison rows (not with --no-guard)
        test = planner.compare_on(inp.test, plan, inp.test_metrics) if inp.test is not None else None
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
