"""Which ideas make per-site Hessian traces cheaper at equal accuracy? Measured on the digits CNN.

    python benchmarks/hessian_ideas.py [--device cpu|cuda] [--tol 0.05] [--out out/bench_hessian_ideas]

Each variant runs the `hessian` estimator to the same per-site relative standard error (`--tol`) or
its probe cap, on the same 256 calibration samples, and reports seconds, probes and the worst
relative standard error reached. Variants: Hutchinson with shared probes (the spine's method), the
adaptive probe set, vmapped probe batches, the two HVP engines, and the Gauss-Newton trace with
exact or sampled output columns (and on fewer samples, for the smallest stable batch).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

import mpsearch
from mpsearch.data import as_data
from mpsearch.examples import load_example
from mpsearch.formats import parse_choices
from mpsearch.objectives import get_objective
from mpsearch.sensitivity import get_estimator

VARIANTS = [
    (
        "hutchinson shared, double backward",
        {"method": "hutchinson", "adaptive": False, "probe_batch": 1, "hvp": "double"},
    ),
    (
        "hutchinson shared, func fwd-over-rev",
        {"method": "hutchinson", "adaptive": False, "probe_batch": 1, "hvp": "func"},
    ),
    ("hutchinson adaptive, double", {"method": "hutchinson", "probe_batch": 1, "hvp": "double"}),
    ("hutchinson adaptive, func, vmap 8", {"method": "hutchinson", "probe_batch": 8, "hvp": "func"}),
    ("hutchinson adaptive, double, batched 8", {"method": "hutchinson", "probe_batch": 8, "hvp": "double"}),
    ("ggn exact columns", {"method": "ggn", "max_exact": 64}),
    ("ggn sampled columns", {"method": "ggn", "max_exact": 0}),
    ("ggn sampled, 128 samples", {"method": "ggn", "max_exact": 0, "max_samples": 128}),
    ("ggn sampled, 64 samples", {"method": "ggn", "max_exact": 0, "max_samples": 64}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    ap.add_argument("--tol", type=float, default=0.05)
    ap.add_argument("--max-probes", type=int, default=400)
    ap.add_argument("--out", type=Path, default=Path("out/bench_hessian_ideas"))
    a = ap.parse_args(argv)
    ex = load_example("digits-cnn")
    model = ex.model.to(a.device)
    data = as_data(ex.calibration).to(a.device)
    site_list = mpsearch.sites(model, data.first_x)
    obj = get_objective("cross_entropy")
    choices = parse_choices("int4", [])
    ref = get_estimator("hessian", method="ggn", max_exact=64).estimate(model, site_list, choices, data, obj)
    exact = ref.site_info.set_index("site").trace
    rows = []
    for label, settings in VARIANTS:
        est = get_estimator("hessian", tol=a.tol, max_probes=a.max_probes, **settings)
        if a.device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        t = est.estimate(model, site_list, choices, data, obj)
        if a.device == "cuda":
            torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        info = t.site_info.set_index("site")
        rows.append(
            {
                "variant": label,
                "seconds": round(secs, 3),
                "probes (max site)": int(info.probes.max()),
                "max rel SE": round(float((info.trace_se / info.trace.abs()).max()), 4),
                "max |rel error| vs exact GGN": round(float(((info.trace - exact) / exact).abs().max()), 4),
            }
        )
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    print()
    print(df.to_string(index=False))
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / f"hessian_ideas_{a.device}.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
