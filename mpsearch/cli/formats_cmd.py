"""`mpsearch formats`: the number formats, their families and their bits per element."""

from __future__ import annotations

import argparse

import pandas as pd

from ..errors import UsageError
from ..formats import format_names, get_choice
from ._registry import command

GRAMMAR = """\
grammar: int{b}[_asym|_fr][_pt|_pc|_g{G}][_mse|_octav|_p{P}]  b = 2..8, default per channel, absmax clip;
         _fr = full-range symmetric (all 2^b codes, largest |w| on -2^(b-1), as NNCF/AutoRound)
         fp8_e4m3 fp8_e5m2 fp6_e3m2 fp6_e2m3 fp4_e2m1, then [_pt|_pc|_g{G}][_mse|_p{P}]  (fp16 scale)
         mxfp8_e4m3 mxfp8_e5m2 mxfp6_e3m2 mxfp6_e2m3 mxfp4 mxint8 (OCP MX v1.0), nvfp4, bf16, fp16
choice:  WEIGHT or WEIGHT:ACT, ACT a per-tensor int{b}[_asym] or fp8 format: int8:int8, fp8_e4m3:fp8_e4m3,
         int4:int8_p9999 (activation clip: min-max, _mse, _octav or _p{P} = the P-th percentile, e.g. _p99.9)"""


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="FORMAT", help="formats or choices to show (default: all)")
    p.add_argument("--shape", default="4096x4096", help="weight shape for bits/elem (default 4096x4096)")


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.lower().replace(",", "x").split("x"))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise UsageError(f"--shape {text!r} is not a shape; write e.g. 4096x4096 or 64x32x3x3")
    return shape


@command("formats", "list the number formats with their bits per element", _arguments)
def run_formats(args: argparse.Namespace) -> int:
    shape = _shape(args.shape)
    rows = []
    for n in args.names or format_names():
        c = get_choice(n)
        f = c.weight
        rows.append({"format": c.name, "family": f.family, "element bits": f.element_bits,
                     f"bits/elem @{args.shape}": round(f.bits_per_element(shape), 4),
                     "act bits": c.act_bits, "stored besides elements": f.layout})
    print(pd.DataFrame(rows).to_string(index=False))
    print(GRAMMAR)
    return 0
