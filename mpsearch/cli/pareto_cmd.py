"""`mpsearch pareto`: sweep a budget, measure every plan, and save the front (table + plot)."""

from __future__ import annotations

import argparse

from ..api import pareto
from ..budget import COLUMNS
from ..formats import DEFAULT_FORMATS
from ..search.settings import key_value
from ._common import Inputs, add_data_args, add_model_args, add_scope_args, info, scope_kwargs
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=False)
    add_data_args(p)
    p.add_argument("--metric", default="memory", choices=sorted(COLUMNS), help="the budget to sweep (default memory)")
    p.add_argument("--points", type=int, default=10, help="budgets in the sweep besides the uniform plans' costs")
    p.add_argument("--formats", help="candidate formats, comma-separated (default: the --hardware target's "
                   f"default_formats, else {','.join(DEFAULT_FORMATS)})")
    p.add_argument("--estimator", default="hessian", help="sensitivity estimator, computed once (default: hessian)")
    p.add_argument("--search", default="ilp",
                   help="searcher at each point: ilp (default), local (ILP + measured local search), refine, optuna")
    p.add_argument("--search-option", action="append", default=[], metavar="K=V", type=key_value,
                   help="searcher setting, e.g. aggregate=max or measurements=40; repeat for several")
    p.add_argument("--hardware", help="cost model for latency/energy sweeps (see `mpsearch hardware list`)")
    p.add_argument("--objective", help="loss to measure (default: cross_entropy with labels, else kl)")
    p.add_argument("--estimator-option", action="append", default=[], metavar="K=V", type=key_value,
                   help="estimator setting, e.g. max_probes=32 or tol=0.1; repeat for several")
    p.add_argument("--guard", action="store_true",
                   help="at each point keep a fitting uniform plan if it measures better")
    p.add_argument("--seed", type=int, default=0)
    add_scope_args(p)
    p.add_argument("-o", "--output", default="pareto", help="writes OUTPUT.csv and OUTPUT.png (default: pareto)")


@command("pareto", "sweep a budget and save the Pareto front of measured plans (table + plot)", arguments)
def run(args: argparse.Namespace) -> int:
    inp = Inputs(args)
    front = pareto(inp.model, inp.data, metric=args.metric, points=args.points, formats=args.formats,
                   estimator=args.estimator, search=args.search, hardware=args.hardware, objective=args.objective,
                   search_settings=dict(args.search_option), estimator_settings=dict(args.estimator_option),
                   test=None if args.data else inp.test, guard_uniform=args.guard, seed=args.seed,
                   **scope_kwargs(args))
    print(front.table().to_string(index=False, float_format=lambda v: f"{v:.5g}"))
    print()
    print(front.dominance().to_string(index=False, float_format=lambda v: f"{v:.5g}"))
    paths = front.save(args.output)
    info(f"wrote {paths['csv']} and {paths['png']}")
    return 0
