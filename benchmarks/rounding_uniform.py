"""Rounding and integer range on a real model: MiniLM-L6 (all 36 encoder linears uniform), mean cosine
to the FP sentence embeddings on the example's 64 held-out sentences, round-to-nearest vs GPTQ.

    python benchmarks/rounding_uniform.py            # needs mpsearch[transformers]
"""

from __future__ import annotations

import time

import torch

import mpsearch
from mpsearch.apply import quantized
from mpsearch.examples import load_example
from mpsearch.rounding import rounding_for

FORMATS = ["int4_g128", "int4_fr_g128", "int4_g128_mse", "int4_fr_g128_mse", "int3_fr_g128_mse", "int8_fr_g128"]


def main() -> None:
    ex = load_example("minilm-l6")
    m = ex.model
    sites = [s.name for s in mpsearch.sites(m, ex.calibration["x"]) if s.kind != "embedding"]
    with torch.no_grad():
        ref = m(**ex.test["x"])
    rows = {}
    for rnd in ("rtn", "gptq"):
        with rounding_for(m, rnd, ex.calibration):
            for f in FORMATS:
                t = time.process_time()
                with quantized(m, {s: f for s in sites}), torch.no_grad():
                    cos = float((m(**ex.test["x"]) * ref).sum(-1).mean())
                rows.setdefault(f, {})[rnd] = (cos, time.process_time() - t)
    bits = {f: mpsearch.formats.get_format(f).bits_per_element((384, 1536)) for f in FORMATS}
    print(f"MiniLM-L6, {len(sites)} encoder linears uniform: mean cosine to FP on held-out sentences")
    print("| format (bits/weight) | rtn | gptq | gptq − rtn | CPU s rtn / gptq |")
    print("| --- | --- | --- | --- | --- |")
    for f, r in rows.items():
        print(f"| `{f}` ({bits[f]:.3f}) | {r['rtn'][0]:.4f} | {r['gptq'][0]:.4f} | {r['gptq'][0] - r['rtn'][0]:+.4f} "
              f"| {r['rtn'][1]:.1f} / {r['gptq'][1]:.1f} |")


if __name__ == "__main__":
    main()
