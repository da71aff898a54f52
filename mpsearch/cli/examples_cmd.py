"""`mpsearch examples [NAME --out DIR]`: list the bundled examples, or write one out as plain files
(a `.pt2` model and `.npz` calibration/test splits) to try the file-based commands on."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..examples import EXAMPLES, load_example
from ._common import info
from ._registry import command


def arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", choices=sorted(EXAMPLES), help="example to write out")
    p.add_argument("--out", type=Path, default=Path("."), help="directory to write into (default: .)")


def export_example(name: str, out: Path) -> dict[str, Path]:
    ex = load_example(name)
    out.mkdir(parents=True, exist_ok=True)
    x = ex.calibration["x"][:2]
    ep = torch.export.export(ex.model, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    paths = {"model": out / "model.pt2", "calibration": out / "calibration.npz", "test": out / "test.npz"}
    torch.export.save(ep, str(paths["model"]))
    for split in ("calibration", "test"):
        d = getattr(ex, split)
        np.savez(paths[split], x=d["x"].numpy(), y=d["y"].numpy())
    return paths


@command("examples", "list the bundled examples, or write one out as model.pt2 + .npz data", arguments)
def run(args: argparse.Namespace) -> int:
    if not args.name:
        for name in EXAMPLES:
            print(name)
        return 0
    paths = export_example(args.name, args.out)
    for k, p in paths.items():
        print(f"{k}: {p}")
    d = args.out
    info(f"try: mpsearch plan {d / 'model.pt2'} --data {d / 'calibration.npz'} --budget 4bits -o {d / 'plan.json'}")
    return 0
