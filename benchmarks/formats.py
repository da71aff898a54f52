"""Quantize-dequantize throughput per format, side by side with a plain `torch.round(x / s) * s` pass.

Each format's `quantize` and the plain pass run alternately on the same 4096×4096 float32 matrix
in one process, so machine contention hits both alike; the ratio (format GB/s ÷ plain GB/s, the
median over paired repeats) is the figure to compare. GB/s counts the float32 input bytes.

    python benchmarks/formats.py --device cpu --out benchmarks/results
    python benchmarks/formats.py --device cuda --out benchmarks/results

Target (issue 4): on CPU, int4_g128 and mxfp4 reach at least 25% of the plain pass.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from mpsearch.formats import get_format

ISSUE_FORMATS = ["int4", "int4_g128", "int8_pt", "int4_asym_g64", "fp8_e4m3", "fp8_e5m2", "fp6_e3m2",
                 "fp6_e2m3", "fp4_e2m1_g32", "mxfp8_e4m3", "mxfp8_e5m2", "mxfp6_e3m2", "mxfp6_e2m3", "mxfp4",
                 "mxint8", "nvfp4", "bf16", "fp16"]
TARGETS = {"int4_g128": 0.25, "mxfp4": 0.25}


def _timed(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(name: str, x: torch.Tensor, repeats: int) -> dict:
    fmt = get_format(name)
    s = x.abs().amax() / 7

    def plain():
        return torch.round(x / s) * s

    def ours():
        return fmt.quantize(x)

    dev = x.device.type
    for f in (plain, ours):  # warm-up (allocator, lazy init, CUDA kernels)
        _timed(f, dev)
    pairs = [(_timed(plain, dev), _timed(ours, dev)) for _ in range(repeats)]
    gb = x.numel() * 4 / 1e9
    t_plain = statistics.median(p for p, _ in pairs)
    t_ours = statistics.median(o for _, o in pairs)
    return {"format": name, "device": dev, "ms": t_ours * 1e3, "GB/s": gb / t_ours, "plain ms": t_plain * 1e3,
            "plain GB/s": gb / t_plain, "ratio": statistics.median(p / o for p, o in pairs)}


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency)."""
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in r] for r in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "cuda" if torch.cuda.is_available() else "cpu"
    p.add_argument("--device", choices=["cpu", "cuda"], default=default)
    p.add_argument("--formats", default=",".join(ISSUE_FORMATS), help="comma-separated format names")
    p.add_argument("--size", type=int, default=4096, help="matrix is size × size (default 4096)")
    p.add_argument("--repeats", type=int, default=7, help="paired timings per format (median reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results", help="folder for formats_<device>.csv / .md")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda but CUDA is not available")
    torch.manual_seed(args.seed)
    x = torch.randn(args.size, args.size, device=args.device)
    rows = [measure(n, x, args.repeats) for n in args.formats.split(",") if n]
    df = pd.DataFrame(rows)
    where = f"{torch.get_num_threads()} threads" if args.device == "cpu" else torch.cuda.get_device_name()
    title = (f"quantize-dequantize of a {args.size}x{args.size} fp32 matrix on {args.device} ({where}), "
             f"torch {torch.__version__}")
    print(title)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    verdicts = []
    if args.device == "cpu":
        for name, need in TARGETS.items():
            row = df[df.format == name]
            if len(row):
                r = float(row.ratio.iloc[0])
                verdict = "PASS" if r >= need else "FAIL"
                verdicts.append(f"target {name} >= {need:.0%} of plain: {r:.0%} {verdict}")
    print("\n".join(verdicts))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"formats_{args.device}.csv", index=False)
    (out / f"formats_{args.device}.md").write_text(
        f"{title}\n\n{markdown(df)}\n\n" + "\n".join(verdicts) + "\n")
    print(f"wrote {out / f'formats_{args.device}.csv'} and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
