"""Time, peak GPU memory and peak host memory per step of planning a Llama-shaped model (random init, bf16).

    python benchmarks/llm_scale.py                 # GPU: TinyLlama-1.1B, Llama-3-8B, 70B-shaped (few layers)
    python benchmarks/llm_scale.py --only tinyllama --estimators   # every registered estimator too
    python benchmarks/llm_scale.py --smoke         # CPU, tiny shapes (what CI runs)
    python benchmarks/llm_scale.py --only llama-70b --layers 80 --devices cuda   # every GPU of the host
    python benchmarks/llm_scale.py --smoke --devices cpu,cpu   # the same code path on 2 gloo processes

Configs (issue 14): TinyLlama-1.1B-shaped, 16×512 tokens with labels, default plan (kfac) end to end
(target ≤ 60 s, ≤ 24 GB GPU); Llama-3-8B-shaped, 32×1024 tokens (target ≤ 5 min, ≤ 40 GB); a
70B-shaped model (hidden 8192, intermediate 28672) with a few of its 80 layers kept on the host and
streamed to the GPU one block at a time: the per-layer sensitivity time and memory at 2 and 4 layers,
and the projected time for all 80 (linear in the layer count, checked from the two points).
Random weights are fine for time and memory; quality claims come from the real models.

With `--devices` (issue 17) the kfac sensitivity of the same layers runs on one device (blocks streamed
from the host) and then spread over the devices (mpsearch.distributed: each rank builds and holds only
its blocks, rank 0 also the embeddings and head): time, peak GPU memory per rank, the speed-up, and
whether the two tables are equal (they must be, bitwise).
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _markdown import markdown  # noqa: E402

import mpsearch  # noqa: E402
import mpsearch.hf  # noqa: E402
from mpsearch import distributed  # noqa: E402
from mpsearch.data import as_data  # noqa: E402
from mpsearch.formats import parse_choices  # noqa: E402
from mpsearch.objectives import get_objective  # noqa: E402
from mpsearch.sensitivity import estimator_names, get_estimator  # noqa: E402
from mpsearch.sensitivity.streaming import serve  # noqa: E402


@dataclass
class Shape:
    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    samples: int
    seq_len: int


SHAPES = {
    "tinyllama": Shape("TinyLlama-1.1B", 2048, 5632, 22, 32, 4, 32000, 16, 512),
    "llama3-8b": Shape("Llama-3-8B", 4096, 14336, 32, 32, 8, 128256, 32, 1024),
    "llama-70b": Shape("Llama-70B", 8192, 28672, 80, 64, 8, 128256, 16, 1024),
    "smoke": Shape("smoke", 64, 128, 2, 4, 2, 128, 4, 32),
}


class PeakRSS:
    """Peak resident host memory over a block, sampled every 5 ms from /proc/self/statm."""

    def __enter__(self):
        self.peak, self._stop = _rss(), threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the process-lifetime peak
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Steps:
    """Rows of (model, step, seconds, peak GPU GB, peak host GB)."""

    def __init__(self, cuda: bool):
        self.cuda, self.rows = cuda, []

    def run(self, model: str, step: str, fn, **extra):
        gc.collect()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
        err = None
        with PeakRSS() as rss:
            t = time.perf_counter()
            try:
                out = fn()
            except Exception as e:  # noqa: BLE001 - a failing step is a row of the table, not the end
                out, err = None, f"{type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e).strip() else ''}"
            if self.cuda:
                torch.cuda.synchronize()
            sec = time.perf_counter() - t
        gpu = torch.cuda.max_memory_allocated() / 1e9 if self.cuda else 0.0
        row = {"model": model, "step": step, "seconds": round(sec, 2), "peak_gpu_GB": round(gpu, 2),
               "peak_host_GB": round(rss.peak / 1e9, 2), **extra, "error": err or ""}
        self.rows.append(row)
        print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        return out


def build(shape: Shape, layers: int | None, device: str, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                      num_hidden_layers=layers or shape.layers, num_attention_heads=shape.heads,
                      num_key_value_heads=shape.kv_heads, vocab_size=shape.vocab, max_position_embeddings=4096)
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(cfg).to(dtype)
    return mpsearch.hf.prepare(model)


def tokens(shape: Shape, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, shape.vocab, (shape.samples, shape.seq_len + 1), generator=g)
    return {"x": {"input_ids": ids[:, :-1].to(device)}, "y": ids[:, 1:].to(device)}


HUTCHINSON = ("hessian", "hutchinson")  # the estimators that `--probes` caps


def plan_on_device(st: Steps, key: str, device: str, dtype, micro_batch: int, estimators,
                   formats: str | None = None, probes: int | None = None, rounding: str = "auto"):
    """The whole model on the device: default plan end to end (sensitivity, then search and guard)."""
    shape = SHAPES[key]
    label = f"{shape.name} {shape.samples}x{shape.seq_len}"
    model = st.run(label, "build (random init)", lambda: build(shape, None, device, dtype))
    data = as_data(tokens(shape, device), batch_size=micro_batch)
    opts = {"micro_batch": micro_batch}
    t0 = time.perf_counter()
    table = st.run(label, "sensitivity (kfac, streamed blocks)",
                   lambda: mpsearch.sensitivity(model, data, estimator="kfac", formats=formats, cache=False,
                                                rounding=rounding, **opts))
    plan = st.run(label, "search + guard (4.5bits)",
                  lambda: mpsearch.plan(model, data, budget="4.5bits", formats=formats, sensitivity=table,
                                        cache=False, rounding=rounding))
    if plan is not None:  # what `auto` resolved to (rtn past GPTQ_AUTO_MAX_BYTES) and why
        st.rows[-1]["step"] += f", rounding {plan.provenance['rounding']}"
        print(f"  rounding: {plan.provenance['rounding']} ({plan.provenance.get('rounding_from', '')})", flush=True)
    st.rows.append({"model": label, "step": "default plan end to end", "seconds":
                    round(time.perf_counter() - t0, 2), "peak_gpu_GB": max(r["peak_gpu_GB"] for r in st.rows[-2:]),
                    "peak_host_GB": max(r["peak_host_GB"] for r in st.rows[-2:]), "error": ""})
    print(st.rows[-1], flush=True)
    if estimators:
        seen = {type(get_estimator("kfac"))}
        for name in estimator_names():  # each estimator once (aliases such as output = auto_quantize skipped)
            if type(get_estimator(name)) not in seen and not seen.add(type(get_estimator(name))):
                if estimators is not True and name not in estimators:
                    continue
                hutch = {"max_probes": probes, "min_probes": min(8, probes)} if probes and name in HUTCHINSON else {}
                t = st.run(label, f"sensitivity ({name}{', ' + str(probes) + ' probes' if hutch else ''})",
                           lambda name=name, hutch=hutch: mpsearch.sensitivity(model, data, estimator=name,
                                                                               cache=False, **hutch))
                if t is not None and t.site_info is not None and "probes" in t.site_info:  # Hutchinson progress
                    print(f"  {name}: method={t.settings.get('method')} probes={int(t.site_info.probes.max())} "
                          f"tol unmet at {len(t.settings.get('tol_unmet', []))} of {len(t.site_info)} sites",
                          flush=True)
    model = table = None  # free the GPU before the next configuration
    gc.collect()


def stream_layers(st: Steps, key: str, device: str, dtype, micro_batch: int, layer_counts: list[int]):
    """Blocks on the host, streamed to the device one at a time: per-layer time, projected to all layers."""
    shape = SHAPES[key]
    points = []
    for n in layer_counts:
        label = f"{shape.name} ({n} of {shape.layers} layers) {shape.samples}x{shape.seq_len}"
        # drawn on the device (CPU init of 70B-shaped blocks took a minute a layer), kept on the host
        model = st.run(label, "build on host", lambda n=n: build_part(shape, n, device, dtype, storage="cpu"))
        data = as_data(tokens(shape, "cpu"), batch_size=micro_batch)
        site_list = mpsearch.sites(model)  # module order; no host forward
        st.run(label, "sensitivity (kfac, host→GPU streaming)",
               lambda m=model, d=data, sl=site_list: mpsearch.sensitivity(
                   m, d, estimator="kfac", site_list=sl, cache=False, micro_batch=micro_batch, device=device,
                   objective="cross_entropy"))
        points.append((n, st.rows[-1]["seconds"]))
        model = data = None
        gc.collect()
    if len(points) >= 2:
        (n1, t1), (n2, t2) = points[0], points[-1]
        per = (t2 - t1) / (n2 - n1)
        fixed = t1 - per * n1
        st.rows.append({"model": f"{shape.name} (projection)", "step":
                        f"all {shape.layers} layers = {fixed:.1f} s + {per:.2f} s/layer", "seconds":
                        round(fixed + per * shape.layers, 1), "peak_gpu_GB": st.rows[-1]["peak_gpu_GB"],
                        "peak_host_GB": float("nan"), "error": ""})
        print(st.rows[-1], flush=True)


def build_part(shape: Shape, layers: int, device: str, dtype: torch.dtype, blocks: range | None = None,
               head: bool = True, storage: str | None = None):
    """A Llama-shaped model whose every weight is drawn from a seed of its own name, so a rank can build only
    its `blocks` (and the embeddings; `head`: the final norm and LM head too) and get the very weights one
    process builds; the rest stays on the meta device. Drawn on `device`, kept on `storage` (default `device`)."""
    import zlib

    from torch import nn
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=shape.hidden, intermediate_size=shape.intermediate, num_hidden_layers=layers,
                      num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads, vocab_size=shape.vocab,
                      max_position_embeddings=4096)
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)

    def kept(name: str) -> bool:
        if name.startswith("model.layers."):
            return blocks is None or int(name.split(".")[2]) in blocks
        return head or not name.startswith(("lm_head.", "model.norm."))

    for name, p in list(model.named_parameters()):
        if not kept(name):
            continue
        gen = torch.Generator(device=device).manual_seed(zlib.crc32(name.encode()))
        t = (torch.ones(p.shape, device=device) if p.dim() == 1 else
             torch.randn(p.shape, generator=gen, device=device) * 0.02)
        mod_name, _, leaf = name.rpartition(".")
        model.get_submodule(mod_name)._parameters[leaf] = nn.Parameter(t.to(storage or device, dtype),
                                                                        requires_grad=False)
    with torch.device(storage or device):  # its buffers are computed, not stored: recompute them off meta
        model.model.rotary_emb = type(model.model.rotary_emb)(config=cfg)
    return mpsearch.hf.prepare(model)


def _formats(smoke: bool) -> str | None:
    return "int4,int8,bf16" if smoke else None


def _kfac(model, data, micro_batch: int, smoke: bool, **settings):
    """The kfac estimator on the whole data (the estimator object too: it holds the per-rank figures)."""
    est = get_estimator("kfac", micro_batch=micro_batch, **settings)
    table = est.estimate(model, mpsearch.sites(model), parse_choices(_formats(smoke), None), data,
                         get_objective("cross_entropy"))
    return est, table


def _rank_command(key: str, n: int, devices: list[str], micro_batch: int, smoke: bool) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--rank-layers", str(n), "--devices", ",".join(devices),
            "--micro-batch", str(micro_batch)] + (["--smoke"] if smoke else ["--only", key])


def serve_rank(key: str, n: int, devices: list[str], dtype, smoke: bool) -> None:
    """Ranks 1..N-1 of a `--devices` run: build this rank's blocks on its device, do rank 0's jobs."""
    with distributed.session(devices) as ranks:
        mine = distributed.share(n, ranks.world, ranks.rank)
        model = build_part(SHAPES[key], n, str(ranks.device), dtype, blocks=mine, head=False)
        ranks.barrier()  # rank 0 starts its clock once every rank has its blocks
        serve(model, ranks)


def spread_layers(st: Steps, key: str, devices: list[str], dtype, micro_batch: int, layer_counts: list[int],
                  baseline: bool = True, smoke: bool = False):
    """The same layers' kfac sensitivity on one device (blocks streamed from the host), then spread over
    `devices`: seconds, peak GPU memory per rank, the speed-up, and whether the tables are equal."""
    shape = SHAPES[key]
    for n in layer_counts:
        label = f"{shape.name} ({n} of {shape.layers} layers) {shape.samples}x{shape.seq_len}"
        data = as_data(tokens(shape, "cpu"), batch_size=micro_batch)
        one = None
        if baseline:
            model = st.run(label, "build on host", lambda n=n: build_part(shape, n, devices[0], dtype, storage="cpu"))
            got = st.run(label, f"sensitivity (kfac, 1 device: {devices[0]})",
                         lambda m=model, d=data: _kfac(m, d, micro_batch, smoke, device=devices[0]))
            one, t1 = (got[1] if got else None), st.rows[-1]["seconds"]
            model = got = None
            gc.collect()
        with distributed.session(devices, _rank_command(key, n, devices, micro_batch, smoke)) as ranks:
            mine = distributed.share(n, ranks.world, 0)
            model = st.run(label, f"build rank 0's blocks {mine.start}-{mine.stop - 1} on {ranks.device}",
                           lambda m=mine, n=n: build_part(shape, n, str(ranks.device), dtype, blocks=m))
            ranks.barrier()
            got = st.run(label, f"sensitivity (kfac, {len(devices)} devices, blocks pipelined)",
                         lambda m=model, d=data: _kfac(m, d, micro_batch, smoke))
        if got is None:
            continue
        tn = st.rows[-1]["seconds"]
        for r in got[0].ranks_:
            st.rows.append({"model": label, "step": f"rank {r['rank']}: blocks {r['blocks'][0]}-{r['blocks'][1] - 1} "
                            f"on {r['device']}", "seconds": round(r["seconds"], 2),
                            "peak_gpu_GB": round(r["peak_gpu_GB"], 2), "peak_host_GB": float("nan"), "error": ""})
        if one is not None:
            equal = one.frame.equals(got[1].frame)
            st.rows.append({"model": label, "step": f"speed-up over 1 device; tables equal: {equal}",
                            "seconds": round(t1 / max(tn, 1e-9), 2), "peak_gpu_GB": float("nan"),
                            "peak_host_GB": float("nan"), "error": "" if equal else "tables differ"})
        print(st.rows[-1], flush=True)
        model = got = None
        gc.collect()


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (what CI runs)")
    ap.add_argument("--only", choices=["tinyllama", "llama3-8b", "llama-70b"], action="append")
    ap.add_argument("--estimators", nargs="?", const="all", help="also time every other registered estimator "
                    "(or these, comma-separated)")
    ap.add_argument("--probes", type=int, help="max Hutchinson probes for hessian/hutchinson (default: theirs)")
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--rounding", default="auto", help="the default plan's rounding (auto: gptq for these models; "
                    "rtn shows what GPTQ costs)")
    ap.add_argument("--layers", default="2,4", help="70B-shaped layer counts to stream")
    ap.add_argument("--out", type=Path, help="write the table as markdown here")
    ap.add_argument("--devices", help="also spread the kfac sensitivity over these devices (cuda:0,cuda:1 or cpu,cpu)")
    ap.add_argument("--no-baseline", action="store_true", help="with --devices: skip the one-device run")
    ap.add_argument("--rank-layers", type=int, help=argparse.SUPPRESS)  # set for ranks 1..N-1 of --devices
    args = ap.parse_args(argv)
    devices = distributed.parse_devices(args.devices)
    cuda = torch.cuda.is_available() and not args.smoke
    device = "cuda" if cuda else "cpu"
    if cuda:
        torch.set_float32_matmul_precision("high")  # TF32 for the fp32 Fisher accumulators (on every rank)
    if args.rank_layers is not None:
        serve_rank("smoke" if args.smoke else (args.only or ["llama-70b"])[0], args.rank_layers, devices,
                   torch.float32 if args.smoke else torch.bfloat16, args.smoke)
        return pd.DataFrame()
    st = Steps(cuda)
    est = (True if args.estimators == "all" else set(args.estimators.split(","))) if args.estimators else False
    if est:  # the Hutchinson engine's choices (func or double, probes per pass) on stdout
        logging.basicConfig(format="  %(name)s: %(message)s")
        logging.getLogger("mpsearch.sensitivity.hessian").setLevel(logging.INFO)
    if devices is not None:
        key = "smoke" if args.smoke else (args.only or ["llama-70b"])[0]
        spread_layers(st, key, devices, torch.float32 if args.smoke else torch.bfloat16,
                      2 if args.smoke else args.micro_batch, [int(v) for v in args.layers.split(",")],
                      baseline=not args.no_baseline, smoke=args.smoke)
    elif args.smoke:
        plan_on_device(st, "smoke", "cpu", torch.float32, 2, est, formats="int4,int8,bf16", probes=args.probes,
                       rounding=args.rounding)
        stream_layers(st, "smoke", "cpu", torch.float32, 2, [1, 2])
    else:
        for key in args.only or ["tinyllama", "llama3-8b", "llama-70b"]:
            if key == "llama-70b":
                stream_layers(st, key, device, torch.bfloat16, args.micro_batch,
                              [int(v) for v in args.layers.split(",")])
            else:
                plan_on_device(st, key, device, torch.bfloat16, args.micro_batch, est, probes=args.probes,
                               rounding=args.rounding)
    frame = pd.DataFrame(st.rows)
    text = markdown(frame)
    print()
    print(text)
    if args.out:
        args.out.write_text(text)
    return frame


if __name__ == "__main__":
    main()
