"""`mpsearch eval`: accuracy and loss of a model, optionally quantized per a plan."""

from __future__ import annotations

import argparse

import pandas as pd

from ..apply import apply
from ..errors import UsageError
from ..objectives import measure
from ..plan import Plan
from ._common import Inputs, add_data_args, add_model_args
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=False)
    add_data_args(p)
    p.add_argument("--plan", help="plan JSON: also evaluate the model quantized per this plan")


@command("eval", "measure accuracy and loss (FP, and quantized per --plan)", arguments)
def run(args: argparse.Namespace) -> int:
    inp = Inputs(args)
    data = inp.test if (inp.test is not None and not args.data) else inp.data
    rows = {}
    if data.labelled:
        metrics = ["accuracy", "cross_entropy"]
        rows["fp"] = measure(inp.model, data, metrics)
        if args.plan:
            rows["plan"] = measure(apply(inp.model, Plan.load(args.plan)), data, metrics)
    else:
        if not args.plan:
            raise UsageError("the data has no labels ('y'); add labels, or pass --plan to compare against FP")
        data = data.with_reference(inp.model)
        rows["plan"] = measure(apply(inp.model, Plan.load(args.plan)), data, ["kl", "sqnr"])
    print(pd.DataFrame(rows).T.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"({data.num_samples} samples{', held-out test split' if data is inp.test else ''})")
    return 0

