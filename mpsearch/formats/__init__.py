"""Number formats: one name grammar, one registry (`get_format`, `get_choice`, `format_names`)."""

from . import _integer  # noqa: F401  (registers the integer and 16-bit families)
from ._base import (
    Choice,
    Format,
    FormatFamily,
    format_names,
    get_choice,
    get_format,
    parse_choices,
    register_family,
)

DEFAULT_FORMATS = ["int2", "int3", "int4", "int5", "int6", "int8", "bf16"]

__all__ = [
    "Choice", "Format", "FormatFamily", "DEFAULT_FORMATS", "format_names", "get_choice", "get_format",
    "parse_choices", "register_family",
]
