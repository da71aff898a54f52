"""`mpsearch check PLAN --target T`: every way a plan breaks a runtime's rules, one line each."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..examples import EXAMPLES
from ..formats import get_choice
from ..model import Site, sites
from ..plan import Plan
from ..targets import get_target, target_names, violations
from ._common import Inputs, info
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("plan", metavar="PLAN", help="plan JSON (from `mpsearch plan`, hand-edited, or foreign)")
    p.add_argument("--target", required=True, help=f"runtime profile: {', '.join(target_names())}, or a .toml")
    p.add_argument("--model", metavar="MODEL",
                   help="the model the plan is for (.pt2, ...): also checks shape rules (blocks dividing K)")
    p.add_argument("--example", choices=sorted(EXAMPLES), help="the plan is for a bundled example's model")
    p.add_argument("--factory", metavar="PKG.MOD:FN", help="function that builds the model for a state-dict MODEL")
    p.add_argument("--trust-pickle", action="store_true", help="allow loading a pickled torch.save model")


def plan_sites(plan: Plan) -> list[Site]:
    """Sites as the plan records them (kind, no shape): enough for format, kind and tie rules."""
    return [Site(n, r.get("kind", "linear"), n, ()) for n, r in plan.sites.items()] or \
        [Site(n, "linear", n, ()) for n in plan.assignments]


@command("check", "list every violation of a target runtime's rules in a plan, one line each", arguments)
def run(args: argparse.Namespace) -> int:
    target = get_target(args.target)
    plan = Plan.load(args.plan)
    for f in plan.assignments.values():
        get_choice(f)  # an unknown format name fails here with its close matches
    if args.model or args.example:
        inp = Inputs(args, need_data=False)
        x = inp.example.calibration["x"][:1] if inp.example is not None else None
        site_list = sites(inp.model, x)
        shapes = True
    else:
        site_list, shapes = plan_sites(plan), False
    if not site_list:
        raise UsageError(f"plan {args.plan!r} names no sites")
    problems = violations(target, site_list, plan.assignments)
    for line in problems:
        print(line)
    note = "" if shapes else " (shape rules not checked: pass --model MODEL or --example)"
    if problems:
        info(f"{len(problems)} violation(s) of {target.name}{note}")
        return 1
    info(f"ok: {len(plan.assignments)} sites deployable on {target.name}{note}")
    return 0
