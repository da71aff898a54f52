"""The `Format` contract and the name registry every format family plugs into.

A format quantizes a weight tensor laid out as rows = output channels (dim 0) and columns = the
reduction dimension (every other dim, flattened in memory order: a conv's in×kh×kw). Per-channel
means per row; groups and MX/NVFP4 blocks run along the columns. `quantize` is simulated
(quantize -> dequantize, same shape and dtype, computed in float32); `encode` gives the stored
form (integer codes + scales + zero-points) and `decode` reads it back, bit-identical to
`quantize`; `storage_bits` is the exact number of bits of that stored form.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch

from ..errors import FormatError
from ..registry import Registry


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


@dataclass(frozen=True)
class Granularity:
    """Which elements share one scale: the whole tensor ("pt"), one output channel ("pc"), or a group
    of `group` consecutive elements of a channel along the reduction dimension ("g")."""

    kind: str = "pc"
    group: int = 0

    PATTERN = r"(?:_(pt|pc|g(\d+)))?"

    @classmethod
    def parse(cls, kind: str | None, group: str | None) -> Granularity:
        if group is not None:
            if int(group) < 1:
                raise FormatError(f"group size must be at least 1, e.g. int4_g128 (got _g{group})")
            return cls("g", int(group))
        return cls(kind or "pc")

    @property
    def suffix(self) -> str:
        return {"pt": "_pt", "pc": "", "g": f"_g{self.group}"}[self.kind]

    def blocks(self, x: torch.Tensor) -> torch.Tensor:
        """(n_blocks_rows, n_blocks_per_row, block elements); groups zero-padded at the row end."""
        if self.kind == "pt":
            return x.reshape(1, 1, -1)
        if self.kind == "pc":
            return as_rows(x).unsqueeze(1)
        return grouped(as_rows(x), self.group)

    def unblock(self, blocks: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        if self.kind == "g":
            return ungrouped(blocks, torch.Size(shape))
        return blocks.reshape(shape)

    def count(self, shape: tuple[int, ...]) -> int:
        """Number of scales a tensor of `shape` needs."""
        if self.kind == "pt":
            return 1
        if self.kind == "pc":
            return row_count(shape)
        return row_count(shape) * math.ceil(col_count(shape) / self.group)

    def describe(self) -> str:
        return {"pt": "per tensor", "pc": "per channel", "g": f"per {self.group} along K"}[self.kind]


@dataclass
class Encoded:
    """A tensor in its stored form: element codes (row layout (R, K), each < 2**code_bits),
    zero-points (asymmetric formats, `code_bits` each) and scales kept exactly as stored (FP16,
    FP32, or uint8 E8M0/E4M3 codes). `bits` counts exactly what a packed file holds."""

    codes: torch.Tensor
    code_bits: int
    scales: dict[str, torch.Tensor] = field(default_factory=dict)
    zeros: torch.Tensor | None = None

    @property
    def bits(self) -> int:
        n = self.codes.numel() + (0 if self.zeros is None else self.zeros.numel())
        return n * self.code_bits + sum(t.numel() * t.element_size() * 8 for t in self.scales.values())


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

    @abstractmethod
    def encode(self, x: torch.Tensor) -> Encoded:
        """The stored form of `x`; `decode(encode(x), x.shape)` equals `quantize(x)` bit for bit."""

    @abstractmethod
    def decode(self, enc: Encoded, shape: tuple[int, ...]) -> torch.Tensor:
        """float32 values of a stored tensor of `shape`."""

    @property
    def layout(self) -> str:
        """One line on what is stored besides the elements (for `mpsearch formats`)."""
        return ""

    # Activation quantization (per tensor, calibrated scale): formats that support it override these.
    def check_activation(self) -> None:
        """Raise a FormatError naming the fix unless this format can quantize activations."""
        raise FormatError(f"{self.name} cannot quantize activations; after the colon use a per-tensor "
                          "int8, int8_asym, fp8_e4m3 or fp8_e5m2 (e.g. int8:int8), optionally _mse or _p9999")

    def calibrate(self, sample: torch.Tensor) -> dict[str, float]:
        """Per-tensor activation parameters ({'scale': s, maybe 'zero': z}) from sampled activations."""
        self.check_activation()
        raise NotImplementedError

    def act_quantize(self, x: torch.Tensor, params: dict[str, float]) -> torch.Tensor:
        """Fake-quantize an activation with calibrated per-tensor `params`."""
        self.check_activation()
        raise NotImplementedError

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
    """Parses one family's names (e.g. every `int{b}_g{G}`) and lists its catalogue. `name` is the family's
    (`Format.family` of what it builds)."""

    name: str = ""
    pattern: re.Pattern[str]

    @abstractmethod
    def build(self, match: re.Match[str]) -> Format: ...

    @abstractmethod
    def catalogue(self) -> list[str]:
        """The names `mpsearch formats` lists for this family."""


# one instance per family; a name is parsed by the first family (in registration order) whose pattern matches
_FAMILIES: Registry[FormatFamily] = Registry("format family", ordered=True)


def register_family(family: type[FormatFamily]) -> type[FormatFamily]:
    """Class decorator: a new family is one new class, no edits elsewhere."""
    _FAMILIES.register(family.name)(family())
    return family


def format_names() -> list[str]:
    return [n for fam in _FAMILIES.values() for n in fam.catalogue()]


@functools.cache
def get_format(name: str | Format) -> Format:
    """Parse a format name such as `int4`, `int8_pt` or `int4_g128`."""
    if isinstance(name, Format):
        return name
    key = str(name).strip().lower()
    for fam in _FAMILIES.values():
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
    if act.is_full_precision:
        return Choice(get_format(w))
    act.check_activation()
    return Choice(get_format(w), act)


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
