"""Time real GEMM kernels per format and shape; write the CSV that `mpsearch hardware calibrate` and
`benchmarks/cost_model.py` read.

Kernels (stock PyTorch only, each checked at run time and skipped with a note when missing):
  bf16                F.linear on bfloat16 (cuBLAS)
  int8:int8           torch._int_mm (int8 x int8 -> int32, cuBLASLt IMMA)
  fp8_e4m3:fp8_e4m3   torch._scaled_mm (e4m3 x e4m3 -> bf16, per-tensor scales)
  int4_g128           torch._weight_int4pack_mm (int4 weights, group-128 bf16 scale+zero, bf16 activations)
  int8                torch._weight_int8pack_mm (int8 weights, bf16 activations), only with --kernels

Timing: CUDA events around CUDA-graph replays of `inner` back-to-back calls (no CPU launch gaps),
warm-up first, median over repeats. Successive calls rotate through enough copies of the operands to
exceed the L2 cache, so weights come from HBM as they would in a model. Needs only torch and the
standard library (runs on the GPU machine's stock PyTorch).

    python benchmarks/measure_kernels.py --out out/kernels-h100          # on the GPU, ~1-3 min
    python benchmarks/measure_kernels.py --device cpu --dry-run --out /tmp/k   # plumbing check
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

SHAPES = [(1024, 1024), (4096, 4096), (14336, 4096), (4096, 14336)]  # (N, K) of the weight
BATCHES = [1, 16, 32, 128, 512, 2048, 8192]  # M: rows of activations (tokens)
DRY_SHAPES = [(256, 256), (512, 1024)]
DRY_BATCHES = [1, 32, 128]
GROUP = 128
FIELDS = [
    "op",
    "m",
    "n",
    "k",
    "in_elems",
    "out_elems",
    "choice",
    "kernel",
    "latency_s",
    "p10_s",
    "p90_s",
    "repeats",
    "inner",
    "copies",
    "timing",
    "device",
    "torch",
]


def _bf16(shape, dev):
    return torch.randn(shape, device=dev, dtype=torch.bfloat16)


def _i8(shape, dev):
    return torch.randint(-127, 128, shape, device=dev, dtype=torch.int8)


class Kernel:
    """One format's kernel: `make(m, n, k)` builds operands and returns a zero-argument call."""

    choice = ""
    name = ""

    def ok(self, m: int, n: int, k: int) -> bool:
        return True

    def make(self, m, n, k, dev):
        raise NotImplementedError

    def bytes(self, m, n, k) -> float:
        raise NotImplementedError


class Bf16(Kernel):
    choice, name = "bf16", "F.linear(bf16)"

    def make(self, m, n, k, dev):
        a, w = _bf16((m, k), dev), _bf16((n, k), dev)
        return lambda: F.linear(a, w)

    def bytes(self, m, n, k):
        return 2.0 * (m * k + n * k + m * n)


class Int8Int8(Kernel):
    choice, name = "int8:int8", "torch._int_mm"

    def ok(self, m, n, k):
        return m > 16 and k % 8 == 0 and n % 8 == 0  # cuBLASLt IMMA constraints enforced by _int_mm

    def make(self, m, n, k, dev):
        a, w = _i8((m, k), dev), _i8((n, k), dev)
        wt = w.t()  # (K, N) column-major: the layout IMMA wants
        try:
            torch._int_mm(a, wt)
        except RuntimeError:
            wt = wt.contiguous()
        return lambda: torch._int_mm(a, wt)

    def bytes(self, m, n, k):
        return m * k + n * k + 4.0 * m * n


class Fp8Fp8(Kernel):
    choice, name = "fp8_e4m3:fp8_e4m3", "torch._scaled_mm(e4m3)"

    def ok(self, m, n, k):
        return m % 16 == 0 and n % 16 == 0 and k % 16 == 0

    def make(self, m, n, k, dev):
        a = _bf16((m, k), dev).to(torch.float8_e4m3fn)
        w = _bf16((n, k), dev).to(torch.float8_e4m3fn)
        one = torch.ones((), device=dev, dtype=torch.float32)
        wt = w.t()
        return lambda: torch._scaled_mm(a, wt, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

    def bytes(self, m, n, k):
        return m * k + n * k + 2.0 * m * n


class Int4WeightOnly(Kernel):
    choice, name = "int4_g128", "torch._weight_int4pack_mm"

    def ok(self, m, n, k):
        return k % (GROUP * 2) == 0 and n % 8 == 0

    def make(self, m, n, k, dev):
        a = _bf16((m, k), dev)
        sz = torch.rand((k // GROUP, n, 2), device=dev, dtype=torch.bfloat16)
        if dev.type == "cpu":
            q = torch.randint(0, 16, (n, k), device=dev, dtype=torch.int32)
            packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
            return lambda: torch._weight_int4pack_mm_for_cpu(a, packed, GROUP, sz)
        try:  # torch >= 2.5 packs uint8 (N, K/2); older versions took int32 (N, K)
            q = torch.randint(0, 256, (n, k // 2), device=dev, dtype=torch.uint8)
            packed = torch._convert_weight_to_int4pack(q, 8)
        except RuntimeError:
            q = torch.randint(0, 16, (n, k), device=dev, dtype=torch.int32)
            packed = torch._convert_weight_to_int4pack(q, 8)
        return lambda: torch._weight_int4pack_mm(a, packed, GROUP, sz)

    def bytes(self, m, n, k):
        return 2.0 * m * k + n * k / 2 + 4.0 * n * k / GROUP + 2.0 * m * n


class Int8WeightOnly(Kernel):
    choice, name = "int8", "torch._weight_int8pack_mm"

    def make(self, m, n, k, dev):
        a, w = _bf16((m, k), dev), _i8((n, k), dev)
        s = torch.rand((n,), device=dev, dtype=torch.bfloat16)
        return lambda: torch._weight_int8pack_mm(a, w, s)

    def bytes(self, m, n, k):
        return 2.0 * m * k + n * k + 2.0 * n + 2.0 * m * n


KERNELS = [Bf16(), Int8Int8(), Fp8Fp8(), Int4WeightOnly(), Int8WeightOnly()]
DEFAULT_KERNELS = "bf16,int8:int8,fp8_e4m3:fp8_e4m3,int4_g128"  # the four the issue names


def _time_cuda(step, inner: int, warmup: int, repeats: int, graph: bool) -> tuple[list[float], str]:
    run, timing = step, "eager"
    if graph:
        try:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                step()
                step()
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                step()
            run, timing = g.replay, "cuda-graph"
        except RuntimeError:
            torch.cuda.synchronize()
    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    out = []
    for _ in range(repeats):
        start.record()
        run()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end) / 1e3 / inner)
    return out, timing


def _time_cpu(step, inner: int, warmup: int, repeats: int) -> tuple[list[float], str]:
    for _ in range(warmup):
        step()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        out.append((time.perf_counter() - t) / inner)
    return out, "cpu-wall"


def measure(kernel: Kernel, m: int, n: int, k: int, dev: torch.device, args) -> dict:
    per_call = kernel.bytes(m, n, k)
    copies = 1 if args.rotate_mb <= 0 else max(1, min(256, math.ceil(args.rotate_mb * 1e6 / per_call)))
    calls = [kernel.make(m, n, k, dev) for _ in range(copies)]
    calls[0]()  # raises here when the kernel or shape is unsupported
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for c in calls[:3]:
        c()
    sync()
    est = max((time.perf_counter() - t0) / min(3, len(calls)), 1e-7)
    inner = max(copies, min(args.max_inner, math.ceil(args.target_ms * 1e-3 / est)))

    def step():
        for i in range(inner):
            calls[i % copies]()

    if dev.type == "cuda":
        times, timing = _time_cuda(step, inner, args.warmup, args.repeats, not args.no_graph)
    else:
        times, timing = _time_cpu(step, inner, args.warmup, args.repeats)
    q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
    return {
        "op": "linear",
        "m": m,
        "n": n,
        "k": k,
        "in_elems": m * k,
        "out_elems": m * n,
        "choice": kernel.choice,
        "kernel": kernel.name,
        "latency_s": statistics.median(times),
        "p10_s": q[0],
        "p90_s": q[-1],
        "repeats": len(times),
        "inner": inner,
        "copies": copies,
        "timing": timing,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument("--out", default="out/kernels", help="folder for kernels.csv, kernels.md and notes.txt")
    p.add_argument(
        "--dry-run", action="store_true", help="tiny shapes and few repeats: checks the plumbing on CPU"
    )
    p.add_argument("--repeats", type=int, default=None, help="timed replays per case (default 25; dry 3)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--target-ms", type=float, default=1.0, help="aim for at least this long per timed replay")
    p.add_argument("--max-inner", type=int, default=512)
    p.add_argument(
        "--rotate-mb",
        type=float,
        default=None,
        help="operand bytes to rotate through so weights miss L2 (default 256 on cuda, 0 on cpu)",
    )
    p.add_argument(
        "--no-graph", action="store_true", help="time eager launches instead of CUDA-graph replays"
    )
    p.add_argument("--max-seconds", type=float, default=270, help="stop adding cases after this long")
    p.add_argument(
        "--kernels",
        default=DEFAULT_KERNELS,
        help=f"choices to measure (default {DEFAULT_KERNELS}; also: int8 weight-only)",
    )
    args = p.parse_args(argv)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        p.error(
            "--device cuda but no CUDA device is visible; use --device cpu --dry-run for a plumbing check"
        )
    args.repeats = args.repeats or (3 if args.dry_run else 25)
    if args.rotate_mb is None:
        args.rotate_mb = 256.0 if dev.type == "cuda" and not args.dry_run else 0.0
    if args.dry_run:
        args.target_ms = min(args.target_ms, 0.2)
        args.warmup = 1
    shapes, batches = (DRY_SHAPES, DRY_BATCHES) if args.dry_run else (SHAPES, BATCHES)
    wanted = set(args.kernels.split(","))
    torch.manual_seed(0)
    if dev.type == "cpu":
        torch.set_num_threads(1)  # the dry run checks plumbing; one thread keeps shared CI machines quiet

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, notes, t_start = [], [], time.perf_counter()
    for kernel in (k for k in KERNELS if k.choice in wanted):
        for n, k in shapes:
            for m in batches:
                if not kernel.ok(m, n, k):
                    continue
                if time.perf_counter() - t_start > args.max_seconds:
                    notes.append(
                        f"stopped at {args.max_seconds:.0f} s before {kernel.choice} m={m} n={n} k={k}"
                    )
                    break
                try:
                    row = measure(kernel, m, n, k, dev, args)
                except (RuntimeError, AttributeError, NotImplementedError, TypeError) as e:
                    msg = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
                    notes.append(f"skipped {kernel.choice} ({kernel.name}) at m={m} n={n} k={k}: {msg}")
                    if dev.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                rows.append(row)
                print(
                    f"{row['choice']:>18} m={m:<5} n={n:<6} k={k:<6} {row['latency_s'] * 1e6:10.2f} us "
                    f"({row['timing']}, inner {row['inner']}, copies {row['copies']})",
                    flush=True,
                )
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
    _write(out, rows, notes, time.perf_counter() - t_start)
    return 0 if rows else 1


def _collapse(notes: list[str]) -> list[str]:
    """One line per kernel for notes that repeat across shapes."""
    seen, out = {}, []
    for n in notes:
        key = n.split(" at m=")[0]
        if key in seen:
            seen[key] += 1
            continue
        seen[key] = 1
        out.append(n)
    return [
        f"{n} (+{seen[n.split(' at m=')[0]] - 1} more shapes)" if seen[n.split(" at m=")[0]] > 1 else n
        for n in out
    ]


def _write(out: Path, rows: list[dict], notes: list[str], seconds: float) -> None:
    with open(out / "kernels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    lines = [
        "| choice | kernel | M | N | K | median latency (us) | p10-p90 (us) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['choice']} | {r['kernel']} | {r['m']} | {r['n']} | {r['k']} | "
            f"{r['latency_s'] * 1e6:.2f} | "
            f"{r['p10_s'] * 1e6:.2f}-{r['p90_s'] * 1e6:.2f} |"
        )
    (out / "kernels.md").write_text("\n".join(lines) + "\n")
    notes = _collapse(notes)
    (out / "notes.txt").write_text("\n".join(notes) + ("\n" if notes else ""))
    for n in notes:
        print("note:", n, file=sys.stderr)
    print(f"{len(rows)} cases in {seconds:.0f} s -> {out / 'kernels.csv'}")


if __name__ == "__main__":
    sys.exit(main())
