"""`mpsearch sensitivity`: estimate Ω(site, format) with error bars, print it and save it as CSV."""

from __future__ import annotations

import argparse

from ..formats import DEFAULT_FORMATS
from ..io import atomic_write_text
from ..planner import PlanConfig, Planner
from ..search.settings import key_value
from ..sensitivity import estimator_names
from ._common import (
    Inputs,
    add_data_args,
    add_device_args,
    add_model_args,
    add_rounding_arg,
    device_settings,
    info,
    run_on_ranks,
)
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=False)
    add_data_args(p)
    p.add_argument(
        "--estimator",
        help=f"one of {', '.join(estimator_names())} (default: hessian; measured with --data zeroq)",
    )
    p.add_argument("--formats", default=",".join(DEFAULT_FORMATS), help="candidate formats, comma-separated")
    p.add_argument("--objective", help="loss to protect (default: cross_entropy with labels, else kl)")
    p.add_argument(
        "--tol", type=float, help="relative standard error target for Hessian traces (default 0.05)"
    )
    p.add_argument(
        "--estimator-option",
        "--set",
        dest="settings",
        action="append",
        type=key_value,
        default=[],
        metavar="KEY=VALUE",
        help="an estimator setting, e.g. --set method=hutchinson --set max_probes=400 (as --estimator-option "
             "in plan, pareto and autotune)",
    )
    p.add_argument("--seed", type=int, default=0)
    add_rounding_arg(p, "when each format's damage is scored")
    add_device_args(p)
    p.add_argument("--no-cache", action="store_true", help="recompute instead of reusing the cache")
    p.add_argument("-o", "--output", default="sensitivity.csv", help="where to write the table (CSV)")


@command("sensitivity", "estimate per-site, per-format sensitivity with error bars", arguments)
def run(args: argparse.Namespace) -> int:
    return run_on_ranks(args, _run)


def _run(args: argparse.Namespace, inp: Inputs) -> int:
    settings = device_settings(args, dict(args.settings))
    if args.tol is not None:
        settings["tol"] = args.tol
    cfg = PlanConfig(formats=args.formats, estimator=args.estimator, estimator_settings=settings,
                     objective=args.objective or inp.objective, seed=args.seed, cache=not args.no_cache,
                     rounding=args.rounding)
    table = Planner(inp.model, inp.data, cfg).sensitivity()
    frame = table.frame.copy()
    frame["rel_se"] = (frame.omega_se / frame.omega.abs()).where(frame.omega != 0)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if table.site_info is not None:
        print()
        print(table.site_info.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    shown = {k: v for k, v in table.settings.items() if k not in ("why",)}
    info(f"estimator {table.estimator}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    if table.settings.get("why"):
        info(f"({table.settings['why']})")
    atomic_write_text(args.output, frame.to_csv(index=False))
    info(f"wrote {args.output}")
    return 0
