"""`mpsearch sites` and `mpsearch formats`: what a model offers and what formats exist."""

from __future__ import annotations

import argparse

import pandas as pd

from ..formats import format_names, get_format
from ..model import site_frame, sites
from ._common import Inputs, add_data_args, add_model_args
from ._registry import command


def _sites_args(p: argparse.ArgumentParser) -> None:
    add_model_args(p, required=False)
    add_data_args(p)


@command("sites", "list a model's quantizable sites (with MACs when --data is given)", _sites_args)
def run_sites(args: argparse.Namespace) -> int:
    inp = Inputs(args, need_data=False)
    example = inp.data.first_x if inp.data is not None else None
    print(site_frame(sites(inp.model, example)).to_string(index=False))
    return 0



@command("formats", "list the number formats with their bits per element")
def run_formats(args: argparse.Namespace) -> int:
    shape = (4096, 4096)
    rows = [{"format": n, "family": get_format(n).family, "element bits": get_format(n).element_bits,
             "bits/elem @4096x4096": round(get_format(n).bits_per_element(shape), 4)} for n in format_names()]
    print(pd.DataFrame(rows).to_string(index=False))
    return 0
