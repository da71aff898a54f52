"""Per-site Hessian traces: mpsearch vs PyHessian at equal accuracy, side by side in one run.

    python benchmarks/sensitivity.py [--device cpu|cuda] [--tol 0.05] [--out out/bench_sensitivity]

Model: ResNet-18-shaped (defined in _models.py; random init, eval-mode BatchNorm, random labels, as
in the reference measurements). mpsearch: `hessian` estimator with its defaults (method=auto picks
the Gauss-Newton trace, which equals the Hessian block trace for this piecewise-linear network).
PyHessian: its Hutchinson `trace` on each layer alone (HAWQ-V2's per-block use), probed in chunks
until that layer's relative standard error is under --tol. Both sides must reach --tol on every
site; the table shows both estimates, their standard errors and the agreement, and the speed ratio.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import resnet18  # noqa: E402

import mpsearch  # noqa: E402
from mpsearch.data import as_data  # noqa: E402
from mpsearch.formats import parse_choices  # noqa: E402
from mpsearch.objectives import get_objective  # noqa: E402
from mpsearch.sensitivity import get_estimator  # noqa: E402


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def pyhessian_layer_traces(model, x, y, site_list, tol: float, chunk: int, max_probes: int, device: str):
    from pyhessian import hessian

    params = dict(model.named_parameters())
    rows = []
    for p in params.values():
        p.requires_grad_(False)
    for s in site_list:
        w = params[s.param]
        w.requires_grad_(True)
        w.grad = None
        torch.manual_seed(0)
        h = hessian(model, F.cross_entropy, data=(x, y), cuda=device == "cuda")
        vals: list[float] = []
        while len(vals) < max_probes:
            vals += h.trace(maxIter=chunk, tol=0.0)  # tol=0: no early stop; we stop on the standard error
            t = torch.tensor(vals, dtype=torch.float64)
            se = float(t.std() / math.sqrt(len(t)))
            if se <= tol * abs(float(t.mean())):
                break
        rows.append(
            {"site": s.name, "pyhessian": float(t.mean()), "pyhessian_se": se, "pyhessian_probes": len(vals)}
        )
        w.grad = None  # PyHessian's create_graph backward leaves a graph on .grad; drop it
        w.requires_grad_(False)
        del h
    for p in params.values():
        p.requires_grad_(True)
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    ap.add_argument("--device", default="cuda" if cuda else "cpu", choices=["cpu", "cuda"])
    ap.add_argument("--image", type=int, help="input side (default 224 on cuda, 16 on cpu)")
    ap.add_argument("--batch", type=int, help="samples (default 64 on cuda, 32 on cpu)")
    ap.add_argument("--classes", type=int, help="classes (default 1000 on cuda, 10 on cpu)")
    ap.add_argument("--tol", type=float, default=0.05, help="relative standard error both sides must reach")
    ap.add_argument("--chunk", type=int, default=10, help="PyHessian probes per trace() call")
    ap.add_argument("--max-probes", type=int, default=400, help="PyHessian probe cap per layer")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--out", type=Path, default=Path("out/bench_sensitivity"))
    a = ap.parse_args(argv)
    gpu = a.device == "cuda"
    image, batch, classes = (
        a.image or (224 if gpu else 16),
        a.batch or (64 if gpu else 32),
        a.classes or (1000 if gpu else 10),
    )
    if a.threads:
        torch.set_num_threads(a.threads)
    model = resnet18(classes, image).to(a.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, image, image, generator=g).to(a.device)
    y = torch.randint(0, classes, (batch,), generator=g).to(a.device)
    data = as_data((x, y), batch)
    site_list = mpsearch.sites(model, x[:2])
    obj = get_objective("cross_entropy")
    print(
        f"ResNet-18-shaped, {len(site_list)} sites, {sum(s.numel for s in site_list) / 1e6:.1f}M weights, "
        f"batch {batch}×3×{image}×{image}, {classes} classes, {a.device}, tol {a.tol:.0%}",
        flush=True,
    )

    est = get_estimator("hessian", tol=a.tol)
    est.estimate(model, site_list[:1], parse_choices("int4", []), as_data((x[:2], y[:2])), obj)  # warm-up
    _sync(a.device)
    t0 = time.perf_counter()
    table = est.estimate(model, site_list, parse_choices("int4", []), data, obj)
    _sync(a.device)
    ours_s = time.perf_counter() - t0
    print(
        f"mpsearch: {ours_s:.2f} s (method {table.settings['method']}: {table.settings['why']})", flush=True
    )

    t0 = time.perf_counter()
    ref = pyhessian_layer_traces(model, x, y, site_list, a.tol, a.chunk, a.max_probes, a.device)
    _sync(a.device)
    pyh_s = time.perf_counter() - t0
    print(f"PyHessian: {pyh_s:.2f} s", flush=True)

    info = table.site_info.rename(
        columns={"trace": "mpsearch", "trace_se": "mpsearch_se", "probes": "mpsearch_probes"}
    )
    df = info[["site", "params", "mpsearch", "mpsearch_se", "mpsearch_probes"]].merge(ref, on="site")
    df["rel_diff"] = (df.mpsearch - df.pyhessian) / df.pyhessian
    df["z"] = (df.mpsearch - df.pyhessian) / (df.mpsearch_se**2 + df.pyhessian_se**2) ** 0.5
    ours_rel = float((df.mpsearch_se / df.mpsearch.abs()).max())
    pyh_rel = float((df.pyhessian_se / df.pyhessian.abs()).max())
    summary = pd.DataFrame(
        [
            {
                "device": a.device,
                "image": image,
                "batch": batch,
                "classes": classes,
                "tol": a.tol,
                "mpsearch_s": round(ours_s, 3),
                "pyhessian_s": round(pyh_s, 3),
                "speedup": round(pyh_s / ours_s, 2),
                "mpsearch_max_rel_se": round(ours_rel, 4),
                "pyhessian_max_rel_se": round(pyh_rel, 4),
                "max_abs_rel_diff": round(float(df.rel_diff.abs().max()), 4),
                "max_abs_z": round(float(df.z.abs().max()), 2),
                "pyhessian_probes": int(df.pyhessian_probes.sum()),
                "mpsearch_method": table.settings["method"],
            }
        ]
    )
    pd.set_option("display.width", 200)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print()
    print(summary.T.to_string(header=False))
    print(
        f"\nmpsearch is {pyh_s / ours_s:.1f}x faster than PyHessian at equal accuracy "
        f"(max relative SE: mpsearch {ours_rel:.3f}, PyHessian {pyh_rel:.3f}; target tol {a.tol})"
    )
    a.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(a.out / f"sites_{a.device}.csv", index=False)
    summary.to_csv(a.out / f"summary_{a.device}.csv", index=False)
    (a.out / f"summary_{a.device}.md").write_text(
        summary.to_markdown(index=False) if _has_tabulate() else summary.to_string(index=False)
    )
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
