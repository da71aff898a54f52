"""Number formats: one name grammar, one registry (`get_format`, `get_choice`, `format_names`).

Families (`Format.family`): `int` (int2..int8, per tensor/channel/group, asymmetric, clipped),
`keep` (bf16, fp16), `minifloat` (FP8/FP6/FP4 with an FP16 scale), `mx` (OCP MX v1.0), `nvfp4`,
`gguf` (llama.cpp block types q4_0 … q8_0).
A choice is `WEIGHT` or `WEIGHT:ACT` (e.g. `int8:int8`, `fp8_e4m3:fp8_e4m3`).
"""

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

__all__ = [
    "Choice", "DEFAULT_FORMATS", "E2M1", "E2M3", "E3M2", "E4M3", "E5M2", "Encoded", "Format", "FormatFamily",
    "Granularity", "INT8", "IntElement", "Minifloat", "format_names", "get_choice", "get_format",
    "parse_choices", "register_family",
]
