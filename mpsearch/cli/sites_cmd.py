"""`mpsearch sites`: what a model offers (`mpsearch formats` lives in formats_cmd)."""

from __future__ import annotations

import argparse

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

