"""The `Format` contract and the name registry every format family plugs into.

A format quantizes a weight tensor laid out as rows = output channels (dim 0) and columns = the
reduction dimension (every other dim, flattened in memory order). Per-channel means per row; groups
run along the columns. `quantize` is simulated (quantize -> dequantize, same shape and dtype);
`storage_bits` is the honest number of bits a packed tensor needs, scales and zero-points included.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ..errors import FormatError


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """View a weight as (output channels, reduction elements)."""
    if x.dim() == 0:
        return x.reshape(1, 1)
    if x.dim() == 1:
        return x.reshape(1, -1)
    return x.reshape(x.shape[0], -1)


def grouped(rows: torch.Tensor, group: int) -> torch.Tensor:
    """(R, K) -> (R, ceil(K/group), group), zero-padding the last group (zeros never raise an absmax)."""
    r, k = rows.shape
    pad = (-k) % group
    if pad:
        rows = torch.nn.functional.pad(rows, (0, pad))
    return rows.reshape(r, -1, group)


def ungrouped(blocks: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of `grouped` followed by `as_rows`: drop the padding and restore `shape`."""
    r = blocks.shape[0]
    k = math.prod(shape) // r if r else 0
    return blocks.reshape(r, -1)[:, :k].reshape(shape)


def row_count(shape: tuple[int, ...]) -> int:
    return shape[0] if len(shape) >= 2 else 1


def col_count(shape: tuple[int, ...]) -> int:
    return math.prod(shape) // row_count(shape) if math.prod(shape) else 0


class Format(ABC):
    """A number format. Subclasses are frozen dataclasses so that equal names give equal objects."""

    family: str = ""

    @property
    @abstractmethod
    def name(self) -> str:
        """Canonical name, parseable by `get_format`."""

    @property
    @abstractmethod
    def element_bits(self) -> float:
        """Bits of one stored element, scales excluded (what BOPs and roofline math multiply by)."""

    @abstractmethod
    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Simulated quantization: the values the packed tensor decodes to, same shape and dtype."""

    @abstractmethod
    def storage_bits(self, shape: tuple[int, ...]) -> int:
        """Total bits to store a tensor of `shape` in this format, scales and zero-points included."""

    @property
    def is_full_precision(self) -> bool:
        """True for the 16-bit 'keep' choices."""
        return False

    def bits_per_element(self, shape: tuple[int, ...]) -> float:
        n = math.prod(shape)
        return self.storage_bits(tuple(shape)) / n if n else 0.0

    def __str__(self) -> str:
        return self.name


class FormatFamily(ABC):
    """Parses one family's names (e.g. every `int{b}_g{G}`) and lists its catalogue."""

    pattern: re.Pattern[str]

    @abstractmethod
    def build(self, match: re.Match[str]) -> Format: ...

    @abstractmethod
    def catalogue(self) -> list[str]:
        """The names `mpsearch formats` lists for this family."""


_FAMILIES: list[FormatFamily] = []


def register_family(family: type[FormatFamily]) -> type[FormatFamily]:
    """Class decorator: a new family is one new class, no edits elsewhere."""
    _FAMILIES.append(family())
    return family


def format_names() -> list[str]:
    return [n for fam in _FAMILIES for n in fam.catalogue()]


@functools.cache
def get_format(name: str | Format) -> Format:
    """Parse a format name such as `int4`, `int8_pt` or `int4_g128`."""
    if isinstance(name, Format):
        return name
    key = str(name).strip().lower()
    for fam in _FAMILIES:
        m = fam.pattern.fullmatch(key)
        if m:
            return fam.build(m)
    close = difflib.get_close_matches(key, format_names(), n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise FormatError(f"unknown format {name!r}; {hint}run `mpsearch formats` for the list")


@dataclass(frozen=True)
class Choice:
    """What one site can be assigned: a weight format and, optionally, an activation format.

    Name grammar: `WEIGHT` (activations stay 16-bit) or `WEIGHT:ACT`, e.g. `int4`, `int8:int8`.
    """

    weight: Format
    act: Format | None = None

    @property
    def name(self) -> str:
        return self.weight.name if self.act is None else f"{self.weight.name}:{self.act.name}"

    @property
    def act_bits(self) -> float:
        return 16.0 if self.act is None else self.act.element_bits

    def __str__(self) -> str:
        return self.name


@functools.cache
def get_choice(name: str | Choice | Format) -> Choice:
    if isinstance(name, Choice):
        return name
    if isinstance(name, Format):
        return Choice(name)
    w, sep, a = str(name).strip().partition(":")
    if not sep:
        return Choice(get_format(w))
    act = get_format(a)
    return Choice(get_format(w), None if act.is_full_precision else act)


def parse_choices(spec: str | list | tuple | None, default: list[str]) -> list[Choice]:
    """`"int2,int4,int8"` or a list of names -> distinct choices in the given order."""
    if spec is None:
        spec = default
    if isinstance(spec, str):
        spec = [s for s in re.split(r"[,\s]+", spec) if s]
    out: list[Choice] = []
    for s in spec:
        c = get_choice(s)
        if c not in out:
            out.append(c)
    if not out:
        raise FormatError("no formats given; pass e.g. --formats int2,int4,int8,bf16")
    return out
