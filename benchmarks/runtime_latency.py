"""Measured ONNX Runtime latency on this CPU vs the calibrated `onnxruntime-cpu` cost model's prediction.

1. Times single Linear layers exported by `mpsearch.exporters.onnx` (FP as bf16 → float, int8 and int4_g32
   weights through DequantizeLinear, int8:int8 QDQ) over a few GEMM shapes with ONNX Runtime (CPU EP,
   --threads intra-op threads), writes `kernels.csv` (m, n, k, choice, latency_s).
2. `mpsearch.hardware_models.calibrate("xeon-8380", kernels.csv)` fits the CPU spec's efficiencies to it
   and writes `onnxruntime-cpu.toml` (use it with `--hardware DIR/onnxruntime-cpu.toml`).
3. The digits CNN as FP (bf16 weights), uniform INT8, uniform INT4 and an mpsearch plan
   (`--target onnxruntime`, budget --budget) is exported and timed in one run, side by side with the
   calibrated model's predicted latency; prints the table (and writes `runtime_latency.md`): measured
   rank vs predicted rank.
Also checks MiniLM-L6's ONNX embeddings against the simulated ones (cosine) with --minilm.

    python benchmarks/runtime_latency.py --out out/ort-cpu            # ~2-4 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import mpsearch
from mpsearch import hardware_models
from mpsearch.examples import load_example
from mpsearch.exporters.onnx import export_onnx

SHAPES = [(1, 256, 128), (64, 256, 128), (1, 1024, 1024), (64, 1024, 1024), (1, 2048, 2048), (16, 2048, 2048),
          (256, 512, 512)]  # (M, K, N)
CHOICES = ["bf16", "int8", "int4_g32", "int8:int8"]
BASE = "xeon-8380"


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def timed(sess, feed: dict, repeats: int) -> float:
    """Median seconds of one run (warm-up first; each sample averages enough runs to last ~5 ms)."""
    for _ in range(3):
        sess.run(None, feed)
    t0 = time.perf_counter()
    sess.run(None, feed)
    inner = max(1, int(0.005 / max(time.perf_counter() - t0, 1e-6)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            sess.run(None, feed)
        samples.append((time.perf_counter() - t0) / inner)
    return statistics.median(samples)


def kernel_table(out: Path, threads: int, repeats: int) -> list[dict]:
    rows = []
    for (m, k, n), choice in tqdm([(s, c) for s in SHAPES for c in CHOICES], desc="layers"):
        torch.manual_seed(0)
        layer = torch.nn.Sequential(torch.nn.Linear(k, n, bias=False)).eval()
        x = torch.randn(m, k)
        plan = mpsearch.Plan.from_assignments(layer, {"0": choice}, data=x, example=x)
        path = out / "layers" / f"{m}x{k}x{n}-{choice.replace(':', '_')}.onnx"
        export_onnx(layer, plan, path, x)
        rows.append({"m": m, "n": n, "k": k, "choice": choice,
                     "latency_s": timed(session(path, threads), {"input": x.numpy()}, repeats)})
    return rows


def model_rows(out: Path, spec: Path, threads: int, repeats: int, budget: str, batch: int) -> list[dict]:
    ex = load_example("digits-cnn")
    model, x = ex.model, ex.test["x"][:batch]
    plans = {"fp (bf16)": {}, "uniform int8": "int8", "uniform int4": "int4"}
    site_names = [s.name for s in mpsearch.sites(model, x[:1])]
    hw = f"{spec}:batch={batch}"  # the calibrated model priced at the timed batch
    built = {label: mpsearch.Plan.from_assignments(model, {s: f for s in site_names} if f else {}, example=x[:1])
             for label, f in plans.items()}
    built[f"plan ({budget})"] = mpsearch.plan(model, ex.calibration, budget=budget, target="onnxruntime",
                                              hardware=hw, formats="int4,int8,int8:int8,bf16")
    rows = []
    for label, plan in tqdm(built.items(), desc="models"):
        plan = mpsearch.Plan.from_assignments(model, plan.assignments, hardware=hw, example=x[:1],
                                              data=ex.calibration)
        path = out / "models" / f"{label.split()[0]}-{label.split()[-1].strip('()')}.onnx"
        export_onnx(model, plan, path, x[:1])
        got = timed(session(path, threads), {"input": x.numpy()}, repeats)
        rows.append({"model": label, "formats": " ".join(plan.assignments.values()),
                     "measured_ms": got * 1e3, "predicted_ms": plan.totals["latency"] * 1e3})
    return rows


def rank(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    r = [0] * len(values)
    for pos, i in enumerate(order):
        r[i] = pos + 1
    return r


def minilm_check(out: Path) -> str:
    ex = load_example("minilm-l6")
    model, x = ex.model, ex.test["x"]
    names = [s.name for s in mpsearch.sites(model, {k: v[:1] for k, v in x.items()})]
    assign = {n: ("int4_g32" if i % 2 else "int8") for i, n in enumerate(names) if "embeddings" not in n}
    plan = mpsearch.Plan.from_assignments(model, assign, example={k: v[:1] for k, v in x.items()})
    r = export_onnx(model, plan, out / "minilm.onnx", {k: v[:2] for k, v in x.items()})
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "minilm.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {k: v.numpy() for k, v in x.items()})[0]
    from mpsearch.apply import quantized

    with torch.no_grad(), quantized(model, plan.assignments):
        want = model(**x).numpy()
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    return (f"MiniLM-L6 ONNX (int8/int4_g32 alternating, {len(x['input_ids'])} test sentences): cosine to the "
            f"simulated embeddings min {cos.min():.7f}, mean {cos.mean():.7f}; site bytes {r.site_bytes} vs plan "
            f"{r.predicted_site_bytes}, other {r.other_bytes}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1: a shared CPU)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--budget", default="5bits")
    p.add_argument("--batch", type=int, default=64, help="digits images per timed run")
    p.add_argument("--minilm", action="store_true", help="also check MiniLM-L6's ONNX embeddings (~1 min)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    kernels = pd.DataFrame(kernel_table(args.out, args.threads, args.repeats))
    kernels.to_csv(args.out / "kernels.csv", index=False)
    spec = args.out / "onnxruntime-cpu.toml"
    cal = hardware_models.calibrate(BASE, args.out / "kernels.csv", out=spec)
    lines = [f"ONNX Runtime {__import__('onnxruntime').__version__}, CPU EP, {args.threads} thread(s); "
             f"calibrated {BASE} -> onnxruntime-cpu on {cal.after['n']} layer timings: MdAPE "
             f"{cal.before['mdape']:.1%} -> {cal.after['mdape']:.1%}, Spearman {cal.before['spearman']:.3f} -> "
             f"{cal.after['spearman']:.3f}", ""]
    rows = model_rows(args.out, spec, args.threads, args.repeats, args.budget, args.batch)
    mr, pr = rank([r["measured_ms"] for r in rows]), rank([r["predicted_ms"] for r in rows])
    lines += [f"digits CNN, batch {args.batch}:", "",
              "| model | formats | measured ms | predicted ms | measured rank | predicted rank |",
              "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['formats']} | {r['measured_ms']:.3f} | {r['predicted_ms']:.3f} | {a} | {b} |"
              for r, a, b in zip(rows, mr, pr)]
    lines += ["", f"ranking agrees: {mr == pr}"]
    if args.minilm:
        lines += ["", minilm_check(args.out)]
    text = "\n".join(lines)
    print(text)
    (args.out / "runtime_latency.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
