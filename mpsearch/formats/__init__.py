"""Number formats: one name grammar, one registry (`get_format`, `get_choice`, `format_names`).

Families (`Format.family`): `int` (int2..int8, per tensor/channel/group, asymmetric, clipped),
`keep` (bf16, fp16), `minifloat` (FP8/FP6/FP4 with an FP16 scale), `mx` (OCP MX v1.0), `nvfp4`,
`gguf` (llama.cpp block types q4_0 … q8_0).
A choice is `WEIGHT` or `WEIGHT:ACT` (e.g. `int8:int8`, `fp8_e4m3:fp8_e4m3`).
A `WeightLayout` (from a site's kind, `layout_for`) says which dims of a weight a format reads as its
rows and reduction: MoE experts (E, out, in) quantize as (E·out, in).
"""

from ..layout import EXPERTS, ROWS, WeightLayout, get_layout, layout_for
from . import _float, _gguf, _integer, _mx, _nvfp4  # noqa: F401  (register the families)
from ._base import (
    Choice,
    Encoded,
    Format,
    FormatFamily,
    Granularity,
    format_names,
    get_choice,
    get_format,
    parse_choices,
    register_family,
)
from ._elements import E2M1, E2M3, E3M2, E4M3, E5M2, INT8, IntElement, Minifloat

# Without a hardware target (and for `sensitivity`); a target's spec names its own (`default_formats`).
DEFAULT_FORMATS = ["int2", "int3", "int4", "int5", "int6", "int8", "bf16"]
# Without a hardware target, for a model whose quantized sites are all Linear layers with at least
# `LINEAR_MIN_K` inputs (a transformer): group-wise full-range INT with an MSE clip, the weight-only
# formats generic runtimes run (llama.cpp / Marlin / NNCF / AutoRound style), planned with GPTQ rounding
# (`mpsearch.rounding`: `rounding="auto"`). 3 to 6 bits cover the 4-5 bit budgets finely; int8 g128 and
# bf16 take the sites that need them.
LINEAR_DEFAULT_FORMATS = ["int3_fr_g128_mse", "int4_fr_g128_mse", "int5_fr_g128_mse", "int6_fr_g128_mse",
                          "int8_fr_g128", "bf16"]
LINEAR_MIN_K = 128

__all__ = [
    "Choice", "DEFAULT_FORMATS", "E2M1", "E2M3", "E3M2", "E4M3", "E5M2", "EXPERTS", "Encoded", "Format",
    "FormatFamily", "Granularity", "INT8", "IntElement", "LINEAR_DEFAULT_FORMATS", "LINEAR_MIN_K", "Minifloat",
    "ROWS", "WeightLayout", "format_names", "get_choice", "get_format", "get_layout", "layout_for", "parse_choices",
    "register_family",
]
