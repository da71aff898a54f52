"""Which dims of a stored weight are its output channels and which its reduction dimension.

A `Format` sees a weight as rows = output channels (dim 0) and columns = every other dim flattened
(`as_rows`): right for a Linear (out, in) and a convolution (out, in, k...), whose reduction runs over
all the trailing dims. A Mixture-of-Experts weight (`Site.kind == "experts"`, transformers 5's
(experts, out, in), each expert computing F.linear(x, W[e])) reduces over `in` only: its matrix is
(experts·out, in), so per-channel means one scale per expert per output channel and groups / MX and
NVFP4 blocks run along `in`, as vLLM's fused MoE, llama.cpp and ModelOpt store experts. A 3-D conv1d
weight has the same rank as an experts weight, so the layout comes from the site's kind, never from the
shape. Per tensor stays one scale for the whole weight in either layout.

It sits below `mpsearch.formats` (`Site.layout` needs it), so a layout takes any `formats.Format` as `fmt`
and calls only its quantize/encode/decode/storage_bits; `mpsearch.formats` re-exports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .errors import FormatError


@dataclass(frozen=True)
class WeightLayout:
    """How a weight maps onto the (rows, reduction) matrix a format quantizes: `rows` (dim 0 are the
    rows, the rest the reduction) or `experts` ((E, out, in) -> (E·out, in))."""

    name: str = "rows"

    def matrix_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape the format is given: `shape` itself for `rows` (as_rows flattens it), (E·out, in)
        for `experts`."""
        shape = tuple(shape)
        if self.name == "experts" and len(shape) >= 3:
            return (math.prod(shape[:-1]), shape[-1])
        return shape

    def _matrix(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.matrix_shape(tuple(x.shape)))

    def quantize(self, fmt, x: torch.Tensor) -> torch.Tensor:
        """`fmt.quantize` of `x` in this layout, shaped as `x`."""
        return fmt.quantize(self._matrix(x)).reshape(x.shape)

    def encode(self, fmt, x: torch.Tensor):
        """The stored form of `x` in this layout; its codes are the matrix's rows."""
        return fmt.encode(self._matrix(x))

    def decode(self, fmt, enc, shape: tuple[int, ...]) -> torch.Tensor:
        return fmt.decode(enc, self.matrix_shape(shape)).reshape(shape)

    def storage_bits(self, fmt, shape: tuple[int, ...]) -> int:
        return fmt.storage_bits(self.matrix_shape(shape))

    def __str__(self) -> str:
        return self.name


ROWS = WeightLayout("rows")
EXPERTS = WeightLayout("experts")
_BY_NAME = {ROWS.name: ROWS, EXPERTS.name: EXPERTS}


def layout_for(kind: str) -> WeightLayout:
    """The layout of a site of `kind` (`Site.kind`): `experts` for MoE experts weights, else `rows`."""
    return EXPERTS if kind == "experts" else ROWS


def get_layout(name: str | WeightLayout | None) -> WeightLayout:
    """A layout by its name (as a packed file records it); None is `rows`."""
    if isinstance(name, WeightLayout):
        return name
    if (name or ROWS.name) not in _BY_NAME:
        raise FormatError(f"unknown weight layout {name!r}; this mpsearch reads {', '.join(_BY_NAME)}: upgrade it")
    return _BY_NAME[name or ROWS.name]
